// Benchmark settings shared by bench:soak and bench:faults: the faults of issue 13's operator run.
/** 8% 5xx, 4% HTML error pages, 4% truncated JSON, 2% hung requests. */
export const OPERATOR_FAULTS = {
  serverErrorRate: 0.08,
  htmlErrorRate: 0.04,
  malformedJsonRate: 0.04,
  hangRate: 0.02,
} as const;
/** 20-120 ms before each request is stamped and judged. */
export const OPERATOR_LATENCY = { min: 20, max: 120 } as const;
