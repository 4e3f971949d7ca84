/* The fast path of the input contract: JSON lines straight into numeric columns.
 *
 * Every string field becomes a 64-bit code (SipHash-2-4 under the deployment's key, the
 * same in every process given that key), so a batch carries no Python object per field.
 * The parser accepts only what it can decode exactly as the reference decoder in
 * streams/contract/reference.py would; anything else (escapes, nulls, odd timestamps, duplicate
 * keys, wrong types, malformed JSON, lines beyond the contract's depth, width or length
 * limits) is marked for that slower path, which also gives every reject its reason.
 * Nothing is judged here.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <locale.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__APPLE__)
#include <xlocale.h>
#endif

/* Column order; streams/contract/events.py holds the same lists. */
enum { K_EVENT, K_ACCOUNT, K_ENDPOINT, K_KEY, K_MODEL, K_IP, K_SUBNET, K_COUNTRY, K_UA,
       K_PROMPT, K_CHECK, N_CODES };
enum { F_TS, F_LATENCY, F_CREATED, F_MODERATION, N_FLOATS };
enum { I_PROMPT, I_COMPLETION, I_STATUS, N_INTS };
enum { B_FLAGGED, B_PLAN, B_FINISH, N_SMALL };
enum { ST_OK = 0, ST_SLOW = 1, ST_TOO_LARGE = 2, ST_EMPTY = 3 };

/* Limits of the contract (README, "Input contract"); streams/contract/reference.py holds the same
 * numbers. The fast path takes no line beyond them: the reference decoder rejects those. */
#define MAX_DEPTH 32     /* nested objects and arrays, the event object included */
#define MAX_MEMBERS 1000 /* members of one object or items of one array */
#define MAX_ID_BYTES 256 /* every string field but user_agent */
#define MAX_UA_BYTES 1024

/* ---- the code of a string: SipHash-2-4 under the deployment's key ------------------- */
/* Written from the algorithm's definition (Aumasson and Bernstein, "SipHash: a fast
 * short-input PRF", 2012): without the key, nobody can choose strings whose codes collide,
 * as they could with the unkeyed hash before it. streams/contract/codes.py derives the keys from
 * the configured secret and sets them before any decoding; until then codes are refused. */
static uint64_t code_k0, code_k1;   /* every code */
static uint64_t check_k0, check_k1; /* the account check, an independent second code */
static uint64_t account_mask = ~0ULL; /* test-only: fewer account-code bits force collisions */
static int key_set;

static inline uint64_t load64(const unsigned char *p) {
    return (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 | (uint64_t)p[3] << 24 |
           (uint64_t)p[4] << 32 | (uint64_t)p[5] << 40 | (uint64_t)p[6] << 48 |
           (uint64_t)p[7] << 56;
}

#define ROTL(x, b) (((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                             \
    do {                                                                                     \
        v0 += v1; v1 = ROTL(v1, 13); v1 ^= v0; v0 = ROTL(v0, 32);                            \
        v2 += v3; v3 = ROTL(v3, 16); v3 ^= v2;                                               \
        v0 += v3; v3 = ROTL(v3, 21); v3 ^= v0;                                               \
        v2 += v1; v1 = ROTL(v1, 17); v1 ^= v2; v2 = ROTL(v2, 32);                            \
    } while (0)

static uint64_t siphash24(uint64_t k0, uint64_t k1, const unsigned char *p, Py_ssize_t n) {
    uint64_t v0 = k0 ^ 0x736f6d6570736575ULL, v1 = k1 ^ 0x646f72616e646f6dULL;
    uint64_t v2 = k0 ^ 0x6c7967656e657261ULL, v3 = k1 ^ 0x7465646279746573ULL;
    Py_ssize_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t m = load64(p + i);
        v3 ^= m;
        SIPROUND; SIPROUND;
        v0 ^= m;
    }
    /* The last block: the 0 to 7 bytes left, and the length's low byte on top. */
    unsigned char last[8] = {0};
    if (n > i) memcpy(last, p + i, (size_t)(n - i));
    last[7] = (unsigned char)n;
    uint64_t m = load64(last);
    v3 ^= m;
    SIPROUND; SIPROUND;
    v0 ^= m;
    v2 ^= 0xff;
    SIPROUND; SIPROUND; SIPROUND; SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

/* Codes are odd, so 0 is kept for "absent" (and for an empty slot in streams/contract/_seen.c). */
static inline uint64_t code_of(const unsigned char *p, Py_ssize_t n) {
    return n == 0 ? 0 : siphash24(code_k0, code_k1, p, n) | 1;
}

static inline uint64_t account_code_of(const unsigned char *p, Py_ssize_t n) {
    return n == 0 ? 0 : (code_of(p, n) & account_mask) | 1;
}

static inline uint64_t check_of(const unsigned char *p, Py_ssize_t n) {
    return n == 0 ? 0 : siphash24(check_k0, check_k1, p, n) | 1;
}

static int key_ready(void) {
    if (key_set) return 1;
    PyErr_SetString(PyExc_RuntimeError,
                    "no hash key set: import streams.contract.codes (it sets the configured key) first");
    return 0;
}

/* The /24 (IPv4) or /48 (IPv6) block, spelled as streams.contract.codes.subnet_of spells it. */
static int subnet_code(const unsigned char *p, Py_ssize_t n, uint64_t *out) {
    if (n == 0) { *out = 0; return 0; }
    int dot = 0, colon = 0;
    Py_ssize_t last_dot = -1, third_colon = n;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (p[i] == '.') { dot = 1; last_dot = i; }
        else if (p[i] == ':' && ++colon == 3) third_colon = i;
    }
    unsigned char buf[MAX_ID_BYTES + 8];
    Py_ssize_t k;
    const char *suffix;
    if (dot && !colon) { k = last_dot; suffix = ".0/24"; }
    else { k = third_colon; suffix = "::/48"; }
    if (k + 5 > (Py_ssize_t)sizeof buf) return -1;
    memcpy(buf, p, (size_t)k);
    memcpy(buf + k, suffix, 5);
    *out = code_of(buf, k + 5);
    return 0;
}

/* ---- JSON scanning; each returns NULL where the line must take the slow path ------- */
typedef const unsigned char *cur;

static inline cur ws(cur p, cur e) {
    while (p < e && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
    return p;
}

static inline int hexd(unsigned char c) {
    return (c >= '0' && c <= '9') || ((c | 32) >= 'a' && (c | 32) <= 'f');
}

/* The code unit of a \\uXXXX escape at q (6 bytes available), or -1. */
static long unit(cur q, cur e) {
    if (e - q < 6 || q[0] != '\\' || q[1] != 'u') return -1;
    long v = 0;
    for (int i = 2; i < 6; i++) {
        unsigned char c = q[i];
        if (!hexd(c)) return -1;
        v = v * 16 + (c <= '9' ? c - '0' : (c | 32) - 'a' + 10);
    }
    return v;
}

/* One UTF-8 sequence at p (lead byte >= 0x80); its length, or 0 if invalid. */
static int utf8_len(cur p, cur e) {
    unsigned char c = p[0];
    int n;
    uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF) { n = 2; cp = c & 0x1F; }
    else if (c >= 0xE0 && c <= 0xEF) { n = 3; cp = c & 0x0F; }
    else if (c >= 0xF0 && c <= 0xF4) { n = 4; cp = c & 0x07; }
    else return 0;
    if (e - p < n) return 0;
    for (int i = 1; i < n; i++) {
        if ((p[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (p[i] & 0x3F);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF))) return 0;
    if (cp >= 0xD800 && cp <= 0xDFFF) return 0;
    return n;
}

/* A string starting at its opening quote. Sets [*s, *n) to its raw content and *esc when
 * it holds escapes (validated, not decoded). Returns the position after the closing quote. */
static cur string(cur p, cur e, cur *s, Py_ssize_t *n, int *esc) {
    cur q = p + 1;
    *esc = 0;
    while (q < e) {
        unsigned char c = *q;
        if (c == '"') {
            *s = p + 1;
            *n = q - (p + 1);
            return q + 1;
        }
        if (c == '\\') {
            *esc = 1;
            if (q + 1 >= e) return NULL;
            unsigned char x = q[1];
            if (x == 'u') {
                /* A surrogate must come as a high-low pair, as the reference decoder
                 * requires: a lone one is not text, and such a line is rejected there. */
                long u = unit(q, e);
                if (u < 0 || (u >= 0xDC00 && u <= 0xDFFF)) return NULL;
                if (u >= 0xD800 && u <= 0xDBFF) {
                    long lo = unit(q + 6, e);
                    if (lo < 0xDC00 || lo > 0xDFFF) return NULL;
                    q += 6;
                }
                q += 6;
            } else if (strchr("\"\\/bfnrt", x) && x) {
                q += 2;
            } else {
                return NULL;
            }
        } else if (c < 0x20) {
            return NULL;
        } else if (c < 0x80) {
            q++;
        } else {
            int k = utf8_len(q, e);
            if (!k) return NULL;
            q += k;
        }
    }
    return NULL;
}

/* A JSON number; *is_int when it has no fraction or exponent. */
static cur number(cur p, cur e, int *is_int) {
    cur q = p;
    *is_int = 1;
    if (q < e && *q == '-') q++;
    if (q >= e) return NULL;
    if (*q == '0') q++;
    else if (*q >= '1' && *q <= '9') while (q < e && *q >= '0' && *q <= '9') q++;
    else return NULL;
    if (q < e && *q == '.') {
        *is_int = 0;
        q++;
        if (q >= e || *q < '0' || *q > '9') return NULL;
        while (q < e && *q >= '0' && *q <= '9') q++;
    }
    if (q < e && (*q == 'e' || *q == 'E')) {
        *is_int = 0;
        q++;
        if (q < e && (*q == '+' || *q == '-')) q++;
        if (q >= e || *q < '0' || *q > '9') return NULL;
        while (q < e && *q >= '0' && *q <= '9') q++;
    }
    return q;
}

/* Every object is walked the same way: open it, then per member read the key up to its
 * value, read or skip the value, and step to the next member or past the end. */

/* At an opening bracket: the first member's position; *done when the container is empty
 * (then the position after it). */
static cur open_container(cur p, cur e, unsigned char open, unsigned char close, int *done) {
    if (p >= e || *p != open) return NULL;
    p = ws(p + 1, e);
    *done = p < e && *p == close;
    return *done ? p + 1 : p;
}

/* A member's key, from its opening quote through the colon: the position of its value. */
static cur member_key(cur p, cur e, cur *s, Py_ssize_t *n, int *esc) {
    if (p >= e || *p != '"' || !(p = string(p, e, s, n, esc))) return NULL;
    p = ws(p, e);
    if (p >= e || *p != ':') return NULL;
    return ws(p + 1, e);
}

/* After a value: the next member's position, or with *done the position after the
 * container. */
static cur next_member(cur p, cur e, unsigned char close, int *done) {
    p = ws(p, e);
    if (p >= e) return NULL;
    *done = *p == close;
    if (*done) return p + 1;
    return *p == ',' ? ws(p + 1, e) : NULL;
}

static cur skip_value(cur p, cur e, int depth);

/* `depth` is the level of the container opened at p (the event object is level 1). */
static cur skip_container(cur p, cur e, int depth, unsigned char close) {
    int done, members = 0;
    if (depth > MAX_DEPTH) return NULL;
    if (!(p = open_container(p, e, close == '}' ? '{' : '[', close, &done))) return NULL;
    while (!done) {
        cur s;
        Py_ssize_t n;
        int esc;
        if (++members > MAX_MEMBERS) return NULL;
        if (close == '}' && !(p = member_key(p, e, &s, &n, &esc))) return NULL;
        if (!(p = skip_value(p, e, depth + 1))) return NULL;
        if (!(p = next_member(p, e, close, &done))) return NULL;
    }
    return p;
}

/* A value at p; a container opened there would be at level `depth`. */
static cur skip_value(cur p, cur e, int depth) {
    if (p >= e) return NULL;
    cur s;
    Py_ssize_t n;
    int esc, is_int;
    switch (*p) {
    case '"': return string(p, e, &s, &n, &esc);
    case '{': return skip_container(p, e, depth, '}');
    case '[': return skip_container(p, e, depth, ']');
    case 't': return (e - p >= 4 && !memcmp(p, "true", 4)) ? p + 4 : NULL;
    case 'f': return (e - p >= 5 && !memcmp(p, "false", 5)) ? p + 5 : NULL;
    case 'n': return (e - p >= 4 && !memcmp(p, "null", 4)) ? p + 4 : NULL;
    default: return number(p, e, &is_int);
    }
}

/* Numbers are parsed with the GIL released, so not with PyOS_string_to_double (its
 * allocator needs the GIL). strtod_l in the "C" locale is correctly rounded as well, so both
 * give the same double for every JSON number. Where it is missing, the row takes the slow
 * path instead. */
#if defined(__GLIBC__) || defined(__APPLE__)
static locale_t c_locale;
#define HAVE_STRTOD_L 1
#endif

static cur read_double(cur p, cur e, double *out) {
    int is_int;
    cur q = number(p, e, &is_int);
    if (!q) return NULL;
#ifdef HAVE_STRTOD_L
    char buf[64];
    if (!c_locale || q - p >= (Py_ssize_t)sizeof buf) return NULL;
    memcpy(buf, p, (size_t)(q - p));
    buf[q - p] = 0;
    char *end;
    double v = strtod_l(buf, &end, c_locale);
    if (end != buf + (q - p) || v > 1.7e308 || v < -1.7e308) return NULL;
    *out = v;
    return q;
#else
    (void)out;
    return NULL;
#endif
}

static cur read_int(cur p, cur e, int64_t *out) {
    int is_int;
    cur q = number(p, e, &is_int);
    if (!q || !is_int || q - p > 18) return NULL;  /* 18 digits never overflow int64 */
    int neg = *p == '-';
    int64_t v = 0;
    for (cur d = p + neg; d < q; d++) v = v * 10 + (*d - '0');
    *out = neg ? -v : v;
    return q;
}

/* ---- RFC 3339 timestamps ------------------------------------------------------------ */
static int64_t days_from_civil(int64_t y, int m, int d) {
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int digits(const unsigned char *p, int n) {
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') return -1;
        v = v * 10 + (p[i] - '0');
    }
    return v;
}

/* YYYY-MM-DDTHH:MM:SS[.ffffff](Z|+HH:MM|-HH:MM) only; other forms take the slow path. */
static int rfc3339(const unsigned char *s, Py_ssize_t n, double *out) {
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (n < 20 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':')
        return -1;
    int y = digits(s, 4), mo = digits(s + 5, 2), d = digits(s + 8, 2);
    int h = digits(s + 11, 2), mi = digits(s + 14, 2), se = digits(s + 17, 2);
    if (y < 1 || mo < 1 || mo > 12 || d < 1 || h < 0 || h > 23 || mi < 0 || mi > 59 ||
        se < 0 || se > 59)
        return -1;
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (d > mdays[mo - 1] + (mo == 2 && leap)) return -1;
    Py_ssize_t i = 19;
    int64_t us = 0;
    if (s[i] == '.') {
        int k = 0;
        i++;
        while (i < n && s[i] >= '0' && s[i] <= '9') {
            if (++k > 6) return -1;
            us = us * 10 + (s[i++] - '0');
        }
        if (k == 0) return -1;
        for (; k < 6; k++) us *= 10;
    }
    int64_t off = 0;
    if (i < n && s[i] == 'Z') {
        i++;
    } else if (i < n && (s[i] == '+' || s[i] == '-')) {
        if (n - i != 6 || s[i + 3] != ':') return -1;
        int oh = digits(s + i + 1, 2), om = digits(s + i + 4, 2);
        if (oh < 0 || oh > 23 || om < 0 || om > 59) return -1;
        off = (int64_t)(oh * 3600 + om * 60) * (s[i] == '-' ? -1 : 1);
        i += 6;
    } else {
        return -1;
    }
    if (i != n) return -1;
    int64_t secs = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se - off;
    /* As datetime.timestamp() computes it: whole microseconds, then one correctly rounded
     * division. That is one IEEE division only while the microseconds convert to a double
     * exactly (below 2^53, about 1685 to 2255); further out the reference decoder decides. */
    int64_t total = secs * 1000000 + us;
    if (total >= ((int64_t)1 << 53) || total <= -((int64_t)1 << 53)) return -1;
    *out = (double)total / 1e6;
    return 0;
}

static cur read_time(cur p, cur e, double *out) {
    if (p < e && *p == '"') {
        cur s;
        Py_ssize_t n;
        int esc;
        cur q = string(p, e, &s, &n, &esc);
        if (!q || esc || rfc3339(s, n, out)) return NULL;
        return q;
    }
    return read_double(p, e, out);
}

/* ---- one event ---------------------------------------------------------------------- */
enum { X_EVENT, X_TS, X_ACCOUNT, X_ENDPOINT, X_KEY, X_MODEL, X_PT, X_CT, X_STATUS, X_LAT,
       X_IP, X_COUNTRY, X_UA, X_PLAN, X_CREATED, X_FLAGGED, X_MOD, X_FINISH, X_PROMPT,
       X_UNKNOWN };

#define KEY(lit, id) if (n == sizeof(lit) - 1 && !memcmp(s, lit, n)) return id
static int field_of(cur s, Py_ssize_t n) {
    KEY("ts", X_TS); KEY("ip", X_IP); KEY("plan", X_PLAN); KEY("model", X_MODEL);
    KEY("status", X_STATUS); KEY("country", X_COUNTRY); KEY("flagged", X_FLAGGED);
    KEY("event_id", X_EVENT); KEY("endpoint", X_ENDPOINT); KEY("account_id", X_ACCOUNT);
    KEY("api_key_id", X_KEY); KEY("latency_ms", X_LAT); KEY("user_agent", X_UA);
    KEY("moderation", X_MOD); KEY("prompt_hash", X_PROMPT); KEY("prompt_tokens", X_PT);
    KEY("finish_reason", X_FINISH); KEY("account_created", X_CREATED);
    KEY("completion_tokens", X_CT);
    return X_UNKNOWN;
}

static int small_code(cur s, Py_ssize_t n, int finish) {
    if (finish) {
        if (n == 0) return 0;
        KEY("stop", 1); KEY("length", 2); KEY("content_filter", 3); KEY("tool_calls", 4);
        return 5;
    }
    KEY("free", 1); KEY("payg", 2); KEY("enterprise", 3);
    return 0;
}
#undef KEY

typedef struct {
    uint64_t *codes;
    double *floats;
    int64_t *ints;
    uint8_t *small;
    Py_ssize_t n;
} Columns;

static const int CODE_OF_FIELD[X_UNKNOWN] = {
    [X_EVENT] = K_EVENT, [X_ACCOUNT] = K_ACCOUNT, [X_ENDPOINT] = K_ENDPOINT, [X_KEY] = K_KEY,
    [X_MODEL] = K_MODEL, [X_IP] = K_IP, [X_COUNTRY] = K_COUNTRY, [X_UA] = K_UA,
    [X_PROMPT] = K_PROMPT};

/* The highest category score. A repeated category goes to the slow path: there the last
 * value wins, as in any JSON object decoded to a dict. */
static cur moderation_max(cur p, cur e, double *out) {
    enum { MAX_KEYS = 32 };
    cur keys[MAX_KEYS];
    Py_ssize_t lens[MAX_KEYS];
    int nkeys = 0;
    double best = Py_NAN;
    int done;
    if (!(p = open_container(p, e, '{', '}', &done))) return NULL;
    while (!done) {
        cur s;
        Py_ssize_t n;
        int esc;
        double v;
        if (!(p = member_key(p, e, &s, &n, &esc)) || esc || nkeys == MAX_KEYS) return NULL;
        for (int k = 0; k < nkeys; k++)
            if (lens[k] == n && !memcmp(keys[k], s, (size_t)n)) return NULL;
        keys[nkeys] = s;
        lens[nkeys++] = n;
        if (!(p = read_double(p, e, &v))) return NULL;
        if (nkeys == 1 || v > best) best = v;
        if (!(p = next_member(p, e, '}', &done))) return NULL;
    }
    *out = best;
    return p;
}

static void defaults(Columns *c, Py_ssize_t i) {
    Py_ssize_t n = c->n;
    for (int k = 0; k < N_CODES; k++) c->codes[k * n + i] = 0;
    c->floats[F_TS * n + i] = 0;
    c->floats[F_LATENCY * n + i] = Py_NAN;
    c->floats[F_CREATED * n + i] = Py_NAN;
    c->floats[F_MODERATION * n + i] = Py_NAN;
    c->ints[I_PROMPT * n + i] = 0;
    c->ints[I_COMPLETION * n + i] = 0;
    c->ints[I_STATUS * n + i] = 200;
    for (int k = 0; k < N_SMALL; k++) c->small[k * n + i] = 0;
}

/* Decodes line i into the columns; 0 when done, -1 when it must take the slow path. */
static int event(cur p, cur e, Columns *c, Py_ssize_t i) {
    Py_ssize_t n = c->n;
    uint32_t seen = 0;
    int done, members = 0;
    defaults(c, i);
    if (!(p = open_container(ws(p, e), e, '{', '}', &done)) || done) return -1;
    while (!done) {
        cur s;
        Py_ssize_t sn;
        int esc;
        if (++members > MAX_MEMBERS || !(p = member_key(p, e, &s, &sn, &esc))) return -1;
        int f = esc ? X_UNKNOWN : field_of(s, sn);
        if (f != X_UNKNOWN) {
            if (seen & (1u << f)) return -1;  /* a repeated field: the slow path decides */
            seen |= 1u << f;
        }
        switch (f) {
        case X_UNKNOWN:
            /* An escaped key may spell a known field; only the slow path can tell. */
            if (esc) return -1;
            p = skip_value(p, e, 2);
            break;
        case X_TS: p = read_time(p, e, &c->floats[F_TS * n + i]); break;
        case X_CREATED: p = read_time(p, e, &c->floats[F_CREATED * n + i]); break;
        case X_LAT: p = read_double(p, e, &c->floats[F_LATENCY * n + i]); break;
        case X_MOD: p = moderation_max(p, e, &c->floats[F_MODERATION * n + i]); break;
        case X_PT: case X_CT: {
            /* A minus sign, even on "-0", is for the slow path to judge. */
            int64_t v;
            if (p >= e || *p == '-' || !(p = read_int(p, e, &v))) return -1;
            c->ints[(f == X_PT ? I_PROMPT : I_COMPLETION) * n + i] = v;
            break;
        }
        case X_STATUS: {
            int64_t v;
            p = read_int(p, e, &v);
            if (p) c->ints[I_STATUS * n + i] = v;
            break;
        }
        case X_FLAGGED:
            if (e - p >= 4 && !memcmp(p, "true", 4)) { c->small[B_FLAGGED * n + i] = 1; p += 4; }
            else if (e - p >= 5 && !memcmp(p, "false", 5)) p += 5;
            else return -1;
            break;
        default: {  /* the string fields */
            if (p >= e || *p != '"' || !(p = string(p, e, &s, &sn, &esc)) || esc) return -1;
            /* Unescaped, the raw length is the UTF-8 length the contract caps. */
            if (sn > (f == X_UA ? MAX_UA_BYTES : MAX_ID_BYTES)) return -1;
            if (f == X_PLAN) { c->small[B_PLAN * n + i] = (uint8_t)small_code(s, sn, 0); break; }
            if (f == X_FINISH) { c->small[B_FINISH * n + i] = (uint8_t)small_code(s, sn, 1); break; }
            if ((f == X_EVENT || f == X_ACCOUNT) && sn == 0) return -1;
            if (f == X_ACCOUNT) {
                c->codes[K_ACCOUNT * n + i] = account_code_of(s, sn);
                c->codes[K_CHECK * n + i] = check_of(s, sn);
                break;
            }
            c->codes[CODE_OF_FIELD[f] * n + i] = code_of(s, sn);
            if (f == X_IP && subnet_code(s, sn, &c->codes[K_SUBNET * n + i])) return -1;
        }
        }
        if (!p || !(p = next_member(p, e, '}', &done))) return -1;
    }
    if (ws(p, e) != e) return -1;
    const uint32_t required = 1u << X_EVENT | 1u << X_TS | 1u << X_ACCOUNT | 1u << X_ENDPOINT;
    return (seen & required) == required ? 0 : -1;
}

/* The bytes of a list's items, taken with the GIL so that a walk over them can run without
 * it: the tuple keeps every item alive whatever happens to the list meanwhile, and bytes
 * never change. A length of -1 marks None, -2 an item that is not bytes. */
typedef struct {
    PyObject *held;
    cur *starts;
    Py_ssize_t *lens;
    Py_ssize_t n;
} Held;

static void held_free(Held *h) {
    PyMem_Free(h->starts);
    PyMem_Free(h->lens);
    Py_CLEAR(h->held);
}

static int held_take(PyObject *list, Held *h) {
    h->held = PyList_AsTuple(list);
    h->starts = NULL;
    h->lens = NULL;
    if (!h->held) return -1;
    h->n = PyTuple_GET_SIZE(h->held);
    h->starts = PyMem_Malloc((h->n ? h->n : 1) * sizeof(cur));
    h->lens = PyMem_Malloc((h->n ? h->n : 1) * sizeof(Py_ssize_t));
    if (!h->starts || !h->lens) {
        held_free(h);
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < h->n; i++) {
        PyObject *v = PyTuple_GET_ITEM(h->held, i);
        int is_bytes = PyBytes_Check(v);
        h->starts[i] = is_bytes ? (cur)PyBytes_AS_STRING(v) : NULL;
        h->lens[i] = is_bytes ? PyBytes_GET_SIZE(v) : v == Py_None ? -1 : -2;
    }
    return 0;
}

/* decode(lines, max_line_bytes) -> (status, codes, floats, ints, small) as bytearrays,
 * column-major: column k of a block holds rows k*n .. k*n+n-1.
 *
 * The walk over the lines runs without the GIL: in the worker it is a fifth of the engine
 * thread's time, and the Kafka consumer thread can unpack the next fetch meanwhile. It
 * reads only the held lines and buffers no other thread can see yet. */
static PyObject *decode(PyObject *self, PyObject *args) {
    PyObject *lines;
    Py_ssize_t max_bytes;
    Held h;
    if (!PyArg_ParseTuple(args, "O!n", &PyList_Type, &lines, &max_bytes)) return NULL;
    if (!key_ready()) return NULL;
    if (held_take(lines, &h)) return NULL;
    Py_ssize_t n = h.n;
    for (Py_ssize_t i = 0; i < n; i++)
        if (h.lens[i] < 0) {
            PyErr_Format(PyExc_TypeError, "line %zd is %s, not bytes", i,
                         Py_TYPE(PyTuple_GET_ITEM(h.held, i))->tp_name);
            held_free(&h);
            return NULL;
        }
    PyObject *st = PyByteArray_FromStringAndSize(NULL, n);
    PyObject *codes = PyByteArray_FromStringAndSize(NULL, n * N_CODES * 8);
    PyObject *floats = PyByteArray_FromStringAndSize(NULL, n * N_FLOATS * 8);
    PyObject *ints = PyByteArray_FromStringAndSize(NULL, n * N_INTS * 8);
    PyObject *small = PyByteArray_FromStringAndSize(NULL, n * N_SMALL);
    if (!st || !codes || !floats || !ints || !small) {
        held_free(&h);
        Py_XDECREF(st);
        Py_XDECREF(codes);
        Py_XDECREF(floats);
        Py_XDECREF(ints);
        Py_XDECREF(small);
        return NULL;
    }
    Columns c = {(uint64_t *)PyByteArray_AS_STRING(codes), (double *)PyByteArray_AS_STRING(floats),
                 (int64_t *)PyByteArray_AS_STRING(ints), (uint8_t *)PyByteArray_AS_STRING(small),
                 n};
    uint8_t *status = (uint8_t *)PyByteArray_AS_STRING(st);
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        cur p = h.starts[i];
        Py_ssize_t len = h.lens[i];
        if (len > max_bytes) status[i] = ST_TOO_LARGE;
        else if (ws(p, p + len) == p + len) status[i] = ST_EMPTY;
        else status[i] = event(p, p + len, &c, i) ? ST_SLOW : ST_OK;
        if (status[i] != ST_OK) defaults(&c, i);  /* the slow path fills or drops the row */
    }
    Py_END_ALLOW_THREADS
    held_free(&h);
    return Py_BuildValue("(NNNNN)", st, codes, floats, ints, small);
}

/* The string value of one top-level field of a line: "" when absent or not a string, NULL
 * (no exception set) when only a full JSON parse can tell (escapes, odd lines). */
static PyObject *field_text(cur p, cur e, const char *name, Py_ssize_t name_len) {
    int done;
    PyObject *found = NULL;
    if (!(p = open_container(ws(p, e), e, '{', '}', &done))) return NULL;
    while (!done) {
        cur s, v;
        Py_ssize_t sn, vn;
        int esc, vesc;
        if (!(p = member_key(p, e, &s, &sn, &esc)) || esc) goto slow;
        if (sn == name_len && !memcmp(s, name, (size_t)sn)) {
            if (found) goto slow;  /* repeated: the last one wins in a full parse */
            if (p < e && *p == '"') {
                if (!(p = string(p, e, &v, &vn, &vesc)) || vesc) goto slow;
                found = PyUnicode_DecodeUTF8((const char *)v, vn, NULL);
            } else {
                if (!(p = skip_value(p, e, 2))) goto slow;
                found = PyUnicode_FromStringAndSize("", 0);
            }
            if (!found) { PyErr_Clear(); goto slow; }
        } else if (!(p = skip_value(p, e, 2))) {
            goto slow;
        }
        if (!(p = next_member(p, e, '}', &done))) goto slow;
    }
    if (ws(p, e) != e) goto slow;
    return found ? found : PyUnicode_FromStringAndSize("", 0);
slow:
    Py_XDECREF(found);
    return NULL;
}

/* The row index at rows[i], checked against a list of n items; -1 with an exception set
 * when it is not an integer in range. */
static Py_ssize_t row_at(PyObject *rows, Py_ssize_t i, Py_ssize_t n) {
    Py_ssize_t r = PyLong_AsSsize_t(PyList_GET_ITEM(rows, i));
    if (r == -1 && PyErr_Occurred()) return -1;
    if (r < 0 || r >= n) {
        PyErr_Format(PyExc_IndexError, "row %zd out of range", r);
        return -1;
    }
    return r;
}

/* texts(lines, rows, field) -> list: the field's string in each of lines[rows], "" when
 * absent, None where the caller must parse the line itself. */
static PyObject *texts(PyObject *self, PyObject *args) {
    PyObject *lines, *rows;
    const char *name;
    Py_ssize_t name_len;
    if (!PyArg_ParseTuple(args, "O!O!s#", &PyList_Type, &lines, &PyList_Type, &rows, &name,
                          &name_len))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(rows), nl = PyList_GET_SIZE(lines);
    PyObject *out = PyList_New(n);
    if (!out) return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t r = row_at(rows, i, nl);
        if (r < 0) goto fail;
        PyObject *ln = PyList_GET_ITEM(lines, r);
        PyObject *t = NULL;
        if (PyBytes_Check(ln)) {
            cur p = (cur)PyBytes_AS_STRING(ln);
            t = field_text(p, p + PyBytes_GET_SIZE(ln), name, name_len);
        }
        if (!t) {
            t = Py_None;
            Py_INCREF(t);
        }
        PyList_SET_ITEM(out, i, t);
    }
    return out;
fail:
    Py_DECREF(out);
    return NULL;
}

/* The UTF-8 bytes of a str (lone surrogates passed through) or bytes, as a new bytes. */
static PyObject *utf8_of(PyObject *arg, const char *fn) {
    if (PyUnicode_Check(arg)) return PyUnicode_AsEncodedString(arg, "utf-8", "surrogatepass");
    if (PyBytes_Check(arg)) return Py_NewRef(arg);
    PyErr_Format(PyExc_TypeError, "%s() takes str or bytes, not %s", fn, Py_TYPE(arg)->tp_name);
    return NULL;
}

static PyObject *code(PyObject *self, PyObject *arg) {
    if (!key_ready()) return NULL;
    PyObject *b = utf8_of(arg, "code");
    if (!b) return NULL;
    uint64_t h = code_of((cur)PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b));
    Py_DECREF(b);
    return PyLong_FromUnsignedLongLong(h);
}

/* account_codes(s) -> (code, check): an account id's code, as the account_id column holds
 * it, and its independent check code (the account_check column). */
static PyObject *account_codes(PyObject *self, PyObject *arg) {
    if (!key_ready()) return NULL;
    PyObject *b = utf8_of(arg, "account_codes");
    if (!b) return NULL;
    cur p = (cur)PyBytes_AS_STRING(b);
    Py_ssize_t n = PyBytes_GET_SIZE(b);
    PyObject *out = Py_BuildValue("(KK)", (unsigned long long)account_code_of(p, n),
                                  (unsigned long long)check_of(p, n));
    Py_DECREF(b);
    return out;
}

/* set_key(key, account_bits=64): the 32 key bytes (16 for codes, 16 for account checks).
 * account_bits < 64 keeps only that many low bits of account codes: a test-only mode in
 * which accounts collide often, to show that colliding identities are kept apart. It must
 * not be called while another thread decodes. */
static PyObject *set_key(PyObject *self, PyObject *args) {
    Py_buffer key;
    int bits = 64;
    if (!PyArg_ParseTuple(args, "y*|i", &key, &bits)) return NULL;
    if (key.len != 32 || bits < 1 || bits > 64) {
        PyBuffer_Release(&key);
        PyErr_SetString(PyExc_ValueError, "set_key needs 32 key bytes and 1 to 64 account bits");
        return NULL;
    }
    const unsigned char *k = key.buf;
    code_k0 = load64(k);
    code_k1 = load64(k + 8);
    check_k0 = load64(k + 16);
    check_k1 = load64(k + 24);
    account_mask = bits == 64 ? ~0ULL : (((uint64_t)1 << bits) - 1);
    key_set = 1;
    PyBuffer_Release(&key);
    Py_RETURN_NONE;
}

/* siphash24(key16, data) -> int: the bare PRF, for its published test vectors. */
static PyObject *siphash(PyObject *self, PyObject *args) {
    Py_buffer key, data;
    if (!PyArg_ParseTuple(args, "y*y*", &key, &data)) return NULL;
    PyObject *out = NULL;
    if (key.len != 16)
        PyErr_SetString(PyExc_ValueError, "siphash24 needs a 16-byte key");
    else
        out = PyLong_FromUnsignedLongLong(siphash24(load64(key.buf), load64((cur)key.buf + 8),
                                                    data.buf, data.len));
    PyBuffer_Release(&key);
    PyBuffer_Release(&data);
    return out;
}

/* ---- routing ------------------------------------------------------------------------ */
/* Kafka's default partitioner hash (the Java client's murmur2, shared by kafka-python and
 * aiokafka). */
static uint32_t murmur2(const unsigned char *d, Py_ssize_t n) {
    const uint32_t m = 0x5bd1e995;
    uint32_t h = 0x9747b28cu ^ (uint32_t)n;
    Py_ssize_t i = 0;
    for (; i + 4 <= n; i += 4) {
        uint32_t k = (uint32_t)d[i] | (uint32_t)d[i + 1] << 8 | (uint32_t)d[i + 2] << 16 |
                     (uint32_t)d[i + 3] << 24;
        k *= m;
        k ^= k >> 24;
        k *= m;
        h *= m;
        h ^= k;
    }
    switch (n & 3) {
    case 3: h ^= (uint32_t)d[i + 2] << 16; /* fall through */
    case 2: h ^= (uint32_t)d[i + 1] << 8; /* fall through */
    case 1: h ^= d[i]; h *= m;
    }
    h ^= h >> 13;
    h *= m;
    h ^= h >> 15;
    return h;
}

/* CRC-32 (the zlib polynomial, reflected): librdkafka's default partitioner hashes a keyed
 * record's key with it, so kcat, confluent-kafka and the other librdkafka clients place
 * records by it. The table is filled once, at module import. */
static uint32_t crc_table[256];

static void crc32_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
        crc_table[i] = c;
    }
}

static uint32_t crc32_of(const unsigned char *d, Py_ssize_t n) {
    uint32_t c = 0xffffffffu;
    for (Py_ssize_t i = 0; i < n; i++) c = crc_table[(c ^ d[i]) & 0xff] ^ (c >> 8);
    return c ^ 0xffffffffu;
}

/* The partition of a key under hash 0 (murmur2, as the Java client places it) or 1
 * (CRC-32, as librdkafka places it). */
static int32_t place(const unsigned char *a, Py_ssize_t an, int hash, uint32_t parts) {
    if (hash == 1) return (int32_t)(crc32_of(a, an) % parts);
    return (int32_t)((murmur2(a, an) & 0x7fffffff) % parts);
}

/* The top-level "account_id" of a record, read as the decoder reads it: 1 with [*a, *an)
 * set to its raw string; 0 where only a full parse can tell (escapes, a repeated or
 * non-string account_id, anything malformed). A nested or quoted "account_id" inside
 * another field is skipped with that field. */
static int top_account(cur p, cur e, cur *a, Py_ssize_t *an) {
    int done, found = 0;
    if (!(p = open_container(ws(p, e), e, '{', '}', &done))) return 0;
    while (!done) {
        cur s;
        Py_ssize_t n;
        int esc;
        if (!(p = member_key(p, e, &s, &n, &esc)) || esc) return 0;
        if (n == 10 && !memcmp(s, "account_id", 10)) {
            /* repeated: the last one wins in the decoder; let the full parse say which */
            if (found || p >= e || *p != '"') return 0;
            if (!(p = string(p, e, a, an, &esc)) || esc || *an == 0) return 0;
            found = 1;
        } else if (!(p = skip_value(p, e, 2))) {
            return 0;
        }
        if (!(p = next_member(p, e, '}', &done))) return 0;
    }
    return found && ws(p, e) == e;
}

/* partitions(values, n, hash=0, max_bytes=-1) -> bytes of int32: the partition of each
 * record's account as the partitioner `hash` places it (see place); -1 for an empty record
 * or one longer than max_bytes (when >= 0), which stays where it was read; -2 where the
 * caller must parse the record to find its top-level account_id (see top_account). */
static PyObject *partitions(PyObject *self, PyObject *args) {
    PyObject *values;
    int parts, hash = 0;
    Py_ssize_t max_bytes = -1;
    if (!PyArg_ParseTuple(args, "O!i|in", &PyList_Type, &values, &parts, &hash, &max_bytes))
        return NULL;
    if (parts < 1) {
        PyErr_SetString(PyExc_ValueError, "partitions must be >= 1");
        return NULL;
    }
    if (hash != 0 && hash != 1) {
        PyErr_SetString(PyExc_ValueError, "hash must be 0 (murmur2) or 1 (crc32)");
        return NULL;
    }
    Held h;
    if (held_take(values, &h)) return NULL;
    PyObject *out = PyBytes_FromStringAndSize(NULL, h.n * 4);
    if (!out) {
        held_free(&h);
        return NULL;
    }
    int32_t *o = (int32_t *)PyBytes_AS_STRING(out);
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < h.n; i++) {
        const unsigned char *p = h.starts[i];
        Py_ssize_t len = h.lens[i];
        if (len == -1 || len == 0 || (max_bytes >= 0 && len > max_bytes)) { o[i] = -1; continue; }
        cur a;
        Py_ssize_t an;
        if (len < 0 || !top_account(p, p + len, &a, &an)) { o[i] = -2; continue; }
        o[i] = place(a, an, hash, (uint32_t)parts);
    }
    Py_END_ALLOW_THREADS
    held_free(&h);
    return out;
}

/* accounts(values, rows) -> list: for each row, the raw bytes of that record's top-level
 * account_id as top_account reads it (the key `partitions` hashed), or None where it gave
 * -1 or -2. Routing keys a forwarded record by it without parsing the record again. */
static PyObject *accounts(PyObject *self, PyObject *args) {
    PyObject *values, *rows;
    if (!PyArg_ParseTuple(args, "O!O!", &PyList_Type, &values, &PyList_Type, &rows)) return NULL;
    Py_ssize_t n = PyList_GET_SIZE(rows), nv = PyList_GET_SIZE(values);
    PyObject *out = PyList_New(n);
    if (!out) return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t r = row_at(rows, i, nv);
        if (r < 0) goto fail;
        PyObject *v = PyList_GET_ITEM(values, r), *t = NULL;
        cur a;
        Py_ssize_t an;
        if (PyBytes_Check(v) && PyBytes_GET_SIZE(v) > 0) {
            cur p = (cur)PyBytes_AS_STRING(v);
            if (top_account(p, p + PyBytes_GET_SIZE(v), &a, &an)) {
                t = PyBytes_FromStringAndSize((const char *)a, an);
                if (!t) goto fail;
            }
        }
        PyList_SET_ITEM(out, i, t ? t : Py_NewRef(Py_None));
    }
    return out;
fail:
    Py_DECREF(out);
    return NULL;
}

/* total_len(lines) -> int: the sum of len() over a list, as the memory budget counts the
 * raw lines an engine holds (streams/engine/budget.py). Summed in Python it took 3% of an
 * exactly_once worker's main thread; bytes, the usual item, are read without a call. */
static PyObject *total_len(PyObject *self, PyObject *lines) {
    if (!PyList_Check(lines)) {
        PyErr_SetString(PyExc_TypeError, "total_len needs a list");
        return NULL;
    }
    Py_ssize_t total = 0;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(lines); i++) {
        PyObject *v = PyList_GET_ITEM(lines, i);
        Py_ssize_t n = PyBytes_CheckExact(v) ? PyBytes_GET_SIZE(v) : PyObject_Size(v);
        if (n < 0) return NULL;
        total += n;
    }
    return PyLong_FromSsize_t(total);
}

static PyMethodDef methods[] = {
    {"decode", decode, METH_VARARGS, "Decode JSON lines into numeric column buffers."},
    {"code", code, METH_O, "The 64-bit code of a string (0 for the empty string)."},
    {"account_codes", account_codes, METH_O, "An account id's code and check code."},
    {"set_key", set_key, METH_VARARGS, "Set the 32-byte hash key (process-wide)."},
    {"siphash24", siphash, METH_VARARGS, "SipHash-2-4 of data under a 16-byte key."},
    {"texts", texts, METH_VARARGS, "One string field of some lines, None where unsure."},
    {"partitions", partitions, METH_VARARGS, "The partition of each record's account."},
    {"accounts", accounts, METH_VARARGS, "The top-level account_id bytes of some records."},
    {"total_len", total_len, METH_O, "The sum of len() over a list of lines."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, .m_name = "_decode", .m_size = -1, .m_methods = methods};

PyMODINIT_FUNC PyInit__decode(void) {
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    crc32_init();
#ifdef HAVE_STRTOD_L
    if (!c_locale) c_locale = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
#endif
    if (PyModule_AddIntConstant(m, "N_CODES", N_CODES) || PyModule_AddIntConstant(m, "N_FLOATS", N_FLOATS) ||
        PyModule_AddIntConstant(m, "N_INTS", N_INTS) || PyModule_AddIntConstant(m, "N_SMALL", N_SMALL)) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
