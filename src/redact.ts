/**
 * Settings are configuration, and configuration holds credentials often enough: what the
 * service shows of them (`GET /models`, a model's `describe()`) goes through `redact` first.
 */

/** What a secret value is shown as. */
export const REDACTED = "[redacted]";

// A key is secret when one of its words (camelCase, snake_case, kebab-case and dotted keys are
// split into words) is one of these: `maxTokens` is not `token`, `tokenizer` is one word.
const SECRET_WORDS = new Set([
  "password",
  "passwd",
  "pwd",
  "secret",
  "secrets",
  "token",
  "auth",
  "authorization",
  "cookie",
  "cookies",
  "passphrase",
  "jwt",
  "credential",
  "credentials",
  "signature",
  "sig",
  "bearer",
  "apikey",
  "privatekey",
  "accesskey",
  "signingkey",
  "secretkey",
]);
// Or two words in a row that name a key or a connection string.
const SECRET_PAIRS = new Set([
  "api key",
  "private key",
  "access key",
  "signing key",
  "account key",
  "encryption key",
  "master key",
  "client key",
  "session key",
  "connection string",
]);
// Or the whole key is one of these.
const SECRET_KEYS = new Set(["key", "pass", "pw"]);

function words(key: string): string[] {
  return key
    .replace(/([a-z0-9])([A-Z])/g, "$1 $2")
    .replace(/([A-Z]+)([A-Z][a-z])/g, "$1 $2")
    .toLowerCase()
    .split(/[^a-z0-9]+/)
    .filter(Boolean);
}

/** True for a key whose value must not be shown (`apiKey`, `db_password`, `X-Amz-Signature`). */
function isSecretKey(key: string): boolean {
  const parts = words(key);
  if (parts.length === 1 && SECRET_KEYS.has(parts[0] as string)) return true;
  return parts.some((word, i) => {
    if (SECRET_WORDS.has(word)) return true;
    const next = parts[i + 1];
    return next !== undefined && SECRET_PAIRS.has(`${word} ${next.replace(/s$/, "")}`);
  });
}

const URL_PATTERN = /\b[a-z][a-z0-9+.-]*:\/\/[^\s"'<>]+/gi;
const USERINFO = /^([a-z][a-z0-9+.-]*:\/\/)[^/?#@\s]+@/i;
const QUERY_PARAMETER = /([?&;])([^=&;#]+)=([^&;#]*)/g;

/** URLs in `text` with their user:password and secret query parameters (`?sig=`) masked. */
function redactUrls(text: string): string {
  if (!text.includes("://")) return text;
  return text.replace(URL_PATTERN, (url) =>
    url.replace(USERINFO, "$1***@").replace(QUERY_PARAMETER, (parameter, separator, name) => {
      let decoded: string = name;
      try {
        decoded = decodeURIComponent(name);
      } catch {
        // not percent-encoded properly: judged as it is
      }
      return isSecretKey(decoded) ? `${separator}${name}=${REDACTED}` : parameter;
    }),
  );
}

const MAX_DEPTH = 32;

/**
 * A copy of `value` safe to show: values of secret-looking keys replaced by `[redacted]` at
 * every depth and inside arrays (a `["authorization", "..."]` pair too), credentials in URLs
 * masked; cycles and values nested deeper than 32 levels are cut.
 *
 * @example
 * redact({ db: { url: "postgres://app:pw@db/x", password: "pw" }, maxTokens: 5 });
 * // { db: { url: "postgres://***@db/x", password: "[redacted]" }, maxTokens: 5 }
 */
export function redact(value: unknown, ancestors: object[] = []): unknown {
  if (typeof value === "string") return redactUrls(value);
  if (typeof value !== "object" || value === null) return value;
  if (ancestors.length >= MAX_DEPTH || ancestors.includes(value)) return "[…]";
  ancestors.push(value);
  try {
    if (Array.isArray(value)) {
      const [name] = value;
      if (value.length === 2 && typeof name === "string" && isSecretKey(name)) {
        return [name, REDACTED];
      }
      return value.map((item) => redact(item, ancestors));
    }
    return Object.fromEntries(
      Object.entries(value).map(([key, item]) => [
        key,
        isSecretKey(key) ? REDACTED : redact(item, ancestors),
      ]),
    );
  } catch {
    return "[unreadable]"; // a getter or a Proxy that throws
  } finally {
    ancestors.pop();
  }
}
