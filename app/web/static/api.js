// The service's HTTP API as the page uses it: the key header, and errors in the service's words.

const KEY_STORAGE = "visionserve.apiKey";

/** A failed request: the service's `error.code` and `error.message`, or why there was no answer. */
export class RequestFailed extends Error {
  constructor({ status, code, message, details = {}, retryAfter = null, fromService = true }) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
    this.retryAfter = retryAfter;
    this.fromService = fromService; // false: no answer in the service's error shape
  }
}

/** The API key, kept in this tab's sessionStorage only (never localStorage, never a cookie). */
export const apiKey = {
  get: () => sessionStorage.getItem(KEY_STORAGE) ?? "",
  set(value) {
    if (value) sessionStorage.setItem(KEY_STORAGE, value);
    else sessionStorage.removeItem(KEY_STORAGE);
  },
};

/** GET or POST `path` with `params` in the query; the parsed JSON, or a RequestFailed. */
export async function call(path, { params = {}, body = null, signal = null } = {}) {
  const url = new URL(path, window.location.origin);
  for (const [name, value] of Object.entries(params)) {
    if (value !== null && value !== undefined && value !== "") url.searchParams.set(name, value);
  }
  const headers = { Accept: "application/json" };
  const key = apiKey.get();
  if (key) headers["X-API-Key"] = key;
  let response;
  try {
    response = await fetch(url, { method: body ? "POST" : "GET", headers, body, signal });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new RequestFailed({
      status: 0,
      code: "unreachable",
      message: `The service could not be reached (${error.message}).`,
      fromService: false,
    });
  }
  const text = await response.text();
  const payload = parseJson(text);
  if (response.ok && payload !== undefined) return payload;
  throw failure(response, payload, text);
}

function parseJson(text) {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function failure(response, payload, text) {
  const retryAfter = response.headers.get("Retry-After");
  const error = payload?.error;
  if (error && typeof error.code === "string" && typeof error.message === "string") {
    return new RequestFailed({
      status: response.status,
      code: error.code,
      message: error.message,
      details: error.details ?? {},
      retryAfter,
    });
  }
  // Something between the page and the service answered (a proxy), or the body is not JSON.
  const excerpt = text.trim().slice(0, 300) || response.statusText || "no body";
  return new RequestFailed({
    status: response.status,
    code: `http_${response.status}`,
    message: excerpt,
    retryAfter,
    fromService: false,
  });
}
