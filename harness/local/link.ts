// Adapter (local runtime, drills): a TCP link in front of an embedded service that can be cut and
// restored on the same port, so a drill can make DynamoDB or SQS unreachable for a while without
// stopping the emulator (its data stays) and without the clients knowing anything changed.
import { once } from 'node:events';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { LocalHarnessError } from './errors.ts';

/** A link was asked to do something its state does not allow (restore before cut, use after close). */
export class LinkStateError extends LocalHarnessError {
  constructor(message: string) {
    super(message);
    this.name = 'LinkStateError';
  }
}

export interface LinkStats {
  /** Connections accepted and forwarded while the link was up. */
  connections: number;
  /** Connections refused (accepted and reset at once) while the link was cut. */
  refused: number;
  /** Times the link was cut. */
  cuts: number;
}

/**
 * Listens on 127.0.0.1 and forwards every connection to `target` (host:port). `cut()` resets every open
 * connection and every new one (the client sees ECONNRESET, as when a service's host is gone), until
 * `restore()`; the listening port stays the same, so endpoints written into configuration keep working.
 */
export class CuttableLink {
  private readonly sockets = new Set<Socket>();
  private down = false;
  private closed = false;
  readonly stats: LinkStats = { connections: 0, refused: 0, cuts: 0 };

  private readonly server: Server;
  readonly port: number;
  private readonly target: { host: string; port: number };

  private constructor(server: Server, port: number, target: { host: string; port: number }) {
    this.server = server;
    this.port = port;
    this.target = target;
  }

  /** Starts a link to `targetEndpoint` (an http://host:port URL) on a free port (or `port`). */
  static async start(targetEndpoint: string, port = 0): Promise<CuttableLink> {
    const url = new URL(targetEndpoint);
    const target = { host: url.hostname, port: Number(url.port) };
    const server = createServer();
    server.listen(port, '127.0.0.1');
    await once(server, 'listening');
    const address = server.address();
    if (address === null || typeof address === 'string')
      throw new LinkStateError('The link did not bind a TCP port.');
    const link = new CuttableLink(server, address.port, target);
    server.on('connection', (socket) => link.accept(socket));
    return link;
  }

  /** The endpoint clients use (http://127.0.0.1:port). */
  get endpoint(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** `url` (a queue URL fauxqs made) with the service's own host:port replaced by the link's. */
  rewrite(url: string): string {
    const u = new URL(url);
    if (u.hostname === this.target.host && Number(u.port) === this.target.port) {
      u.hostname = '127.0.0.1';
      u.port = String(this.port);
    }
    return u.toString();
  }

  get isCut(): boolean {
    return this.down;
  }

  private accept(client: Socket): void {
    if (this.down || this.closed) {
      this.stats.refused++;
      client.resetAndDestroy();
      return;
    }
    this.stats.connections++;
    const upstream = createConnection(this.target);
    this.sockets.add(client);
    this.sockets.add(upstream);
    const drop = () => {
      this.sockets.delete(client);
      this.sockets.delete(upstream);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
    client.pipe(upstream);
    upstream.pipe(client);
  }

  /** Makes the service unreachable: open connections are reset, new ones refused. */
  cut(): void {
    if (this.closed) throw new LinkStateError('The link is closed; it cannot be cut.');
    this.down = true;
    this.stats.cuts++;
    for (const s of this.sockets) s.resetAndDestroy();
    this.sockets.clear();
  }

  /** Makes the service reachable again on the same port. */
  restore(): void {
    if (this.closed) throw new LinkStateError('The link is closed; it cannot be restored.');
    this.down = false;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
