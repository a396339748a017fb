// Domain: the errors the Keap sandbox raises. Callers branch on the class, never on the message.

/** Base class of every error the sandbox raises. */
export class SandboxError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** A sandbox option is missing or out of range; `option` names it. Raised by `startSandbox`. */
export class SandboxConfigError extends SandboxError {
  readonly option: string;
  constructor(option: string, message: string) {
    super(`Invalid sandbox option "${option}": ${message}`);
    this.option = option;
  }
}

/** One entry of Keap's v2 error `details` array. */
export interface ApiErrorDetail {
  domain: string;
  resource: string;
}

/**
 * A request the sandbox answers with Keap's v2 error shape `{code, message, status, details}`.
 * Thrown by the route handlers and turned into a response by the server.
 */
export class ApiError extends SandboxError {
  readonly status: number;
  readonly details: ApiErrorDetail[];
  constructor(status: number, message: string, details: ApiErrorDetail[] = []) {
    super(message);
    this.status = status;
    this.details = details;
  }
}

/** A mutation asked for an unknown type or a negative count. */
export class SandboxMutationError extends SandboxError {}
