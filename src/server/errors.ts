// Errors the server answers with a status and one message: {error: {message}}.
export class HttpError extends Error {
  override name = 'HttpError';
  constructor(
    readonly statusCode: number,
    message: string,
  ) {
    super(message);
  }
}

/** Thrown from onStep when a job is cancelled: the pipeline unwinds between decoding steps. */
export class JobCancelled extends Error {
  override name = 'JobCancelled';
  constructor() {
    super('the job was cancelled');
  }
}
