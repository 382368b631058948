// Type declarations of bridge.js, the Pushbridge browser client.

export type Transport = "ws" | "sse" | "poll";
export type State = "idle" | "connecting" | "open" | "reconnecting" | "closed";

export interface BridgeOptions {
  /** Transports to try, in order (default ["ws", "sse", "poll"]). */
  transports?: Transport[];
  /** Use only this transport. */
  transport?: Transport | null;
  /** Dev mode: the user id, sent as ?user=. */
  user?: string | null;
  /** A JWT: ?token= on WebSocket and EventSource, Authorization on fetch. */
  token?: string | null;
  /** Resume after this message id (for example one kept in sessionStorage). */
  cursor?: string | null;
  /**
   * Receive only messages with these routing keys (sent as ?topics= on every
   * transport; the server refuses keys it does not deliver). Default: all.
   */
  topics?: string[] | null;
  /** Send cookies to a server on another origin. */
  withCredentials?: boolean;
  /** ms a transport may stay silent before it counts as failed (5000). */
  openTimeout?: number;
  /** ms the first retry waits at most (500); doubles each time, with full jitter. */
  backoffBase?: number;
  /** ms no retry waits longer than (30000). */
  backoffMax?: number;
  /** ms a connection must stay open for the backoff to start over (10000). */
  stableAfter?: number;
  /** Seconds one poll may wait on the server (server default 25). */
  pollWait?: number | null;
  /** How many message ids are remembered to drop repeats (1000). */
  dedupeWindow?: number;
  /**
   * Delivery receipts (message.received for the backend): true (default) confirms each
   * message once the "message" listeners returned; "manual" leaves it to ack(id);
   * false never confirms.
   */
  ack?: boolean | "manual";
}

export interface BridgeMessage {
  /** Opaque cursor: the message's place in the history. */
  id: string;
  routingKey: string;
  /** The body: parsed JSON when it is JSON, else its text. */
  data: unknown;
  transport: Transport;
}

export interface Welcome {
  type: "welcome";
  user: string;
  instance: string;
  resumed: boolean;
  cursor?: string;
}

export interface Reset {
  type: "reset";
  /** Why messages after the cursor could not be replayed. */
  reason: string;
}

export interface BridgeEvents {
  message: (m: BridgeMessage) => void;
  state: (state: State, transport: Transport | null) => void;
  reset: (r: Reset) => void;
  welcome: (w: Welcome) => void;
  /** The server applied a subscribe (WebSocket); [] means every routing key. */
  subscribed: (topics: string[]) => void;
  error: (e: Error) => void;
}

export class Bridge {
  /** url: the server; "" or undefined for the page's own origin. */
  constructor(url?: string, opts?: BridgeOptions);
  readonly transport: Transport | null;
  readonly state: State;
  /** Id of the last message delivered; a reconnect resumes after it. */
  readonly cursor: string | null;
  /** Adds a listener; returns a function that removes it. */
  on<E extends keyof BridgeEvents>(event: E, fn: BridgeEvents[E]): () => void;
  /** Sends data with an optional routing key (server default "inbound"). */
  send(data: unknown, routingKey?: string): Promise<void>;
  /**
   * Receive only these routing keys from now on (null or []: all). WebSocket sends a
   * subscribe frame; SSE and poll reconnect with the new ?topics=.
   */
  subscribe(topics: string[] | null): void;
  /**
   * Confirms the messages with these ids were handled (an ack frame on WebSocket, else
   * POST /api/ack). The backend gets one message.received per message and user.
   */
  ack(...ids: (string | string[])[]): void;
  close(): void;
}

export function connect(url?: string, opts?: BridgeOptions): Bridge;
