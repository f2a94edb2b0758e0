/* car_link.c: see car_link.h and ../PROTOCOL.md. C99, no malloc, no floats. */
#include "car_link.h"

#define BODY_HEARTBEAT 8u
#define BODY_COMMAND 6u
#define BODY_TELEMETRY 28u
#define BODY_ERROR 3u
#define NO_SEQ 0xFFFFu

static uint8_t body_len_for(uint8_t type)
{
    switch (type) {
    case CL_HEARTBEAT: return BODY_HEARTBEAT;
    case CL_COMMAND: return BODY_COMMAND;
    case CL_TELEMETRY: return BODY_TELEMETRY;
    case CL_ARM: return 0u;
    case CL_DISARM: return 0u;
    case CL_ERROR: return BODY_ERROR;
    default: return 0xFFu;
    }
}

static void put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v & 0xFFu);
    p[1] = (uint8_t)(v >> 8);
}

static void put_u32(uint8_t *p, uint32_t v)
{
    put_u16(p, (uint16_t)(v & 0xFFFFu));
    put_u16(p + 2, (uint16_t)(v >> 16));
}

static uint16_t get_u16(const uint8_t *p)
{
    return (uint16_t)((uint16_t)p[0] | (uint16_t)((uint16_t)p[1] << 8));
}

/* Two's complement by hand: converting an out-of-range unsigned to a signed type is
 * implementation-defined in C99, and this file must mean the same on every compiler. */
static int16_t get_i16(const uint8_t *p)
{
    uint16_t u = get_u16(p);
    return (u & 0x8000u) ? (int16_t)(-(int16_t)(uint16_t)(~u) - 1) : (int16_t)u;
}

static uint16_t from_i16(int16_t v) { return (uint16_t)v; } /* well defined: modulo 2^16 */

static int16_t clamp_permille(int16_t v)
{
    if (v > CL_PERMILLE) return CL_PERMILLE;
    if (v < -CL_PERMILLE) return -CL_PERMILLE;
    return v;
}

uint16_t cl_crc16(const uint8_t *data, uint16_t len)
{
    uint16_t crc = 0xFFFFu;
    uint16_t i;
    uint8_t bit;
    for (i = 0; i < len; i++) {
        crc ^= (uint16_t)((uint16_t)data[i] << 8);
        for (bit = 0; bit < 8u; bit++) {
            crc = (crc & 0x8000u) ? (uint16_t)((uint16_t)(crc << 1) ^ 0x1021u) : (uint16_t)(crc << 1);
        }
    }
    return crc;
}

uint16_t cl_frame(uint8_t type, uint16_t seq, const uint8_t *body, uint8_t body_len,
                  uint8_t *out, uint16_t cap)
{
    uint8_t raw[CL_MAX_DECODED];
    uint16_t n, i, o, code_at;
    uint8_t code;
    uint16_t crc;

    if (body_len > CL_MAX_BODY) return 0;
    n = (uint16_t)(CL_HEADER_LEN + body_len);
    /* worst case: one code byte per 254 data bytes, one leading code byte, the delimiter */
    if (cap < (uint16_t)(n + 2u + 1u + (n + 2u) / 254u)) return 0;
    raw[0] = (uint8_t)CL_VERSION;
    raw[1] = type;
    put_u16(raw + 2, seq);
    for (i = 0; i < body_len; i++) raw[CL_HEADER_LEN + i] = body[i];
    crc = cl_crc16(raw, n);
    put_u16(raw + n, crc); /* little-endian on the wire */
    n = (uint16_t)(n + 2u);

    /* COBS: each block is a code byte (distance to the next zero) and code-1 data bytes */
    code_at = 0;
    o = 1;
    code = 1;
    for (i = 0; i < n; i++) {
        if (raw[i] == 0u) {
            out[code_at] = code;
            code_at = o++;
            code = 1;
        } else {
            out[o++] = raw[i];
            code++;
            if (code == 0xFFu) {
                out[code_at] = code;
                code_at = o++;
                code = 1;
            }
        }
    }
    out[code_at] = code;
    out[o++] = 0u;
    return o;
}

static void send(cl_link *l, uint8_t type, const uint8_t *body, uint8_t body_len)
{
    uint8_t frame[CL_MAX_FRAME];
    uint16_t len = cl_frame(type, l->tx_seq, body, body_len, frame, (uint16_t)sizeof frame);
    if (len == 0u) return;
    l->tx_seq++;
    l->counters[CL_C_TX]++;
    if (l->write) l->write(l->write_ctx, frame, len);
}

static void send_error(cl_link *l, uint8_t code, uint16_t ref_seq)
{
    uint8_t body[BODY_ERROR];
    body[0] = code;
    put_u16(body + 1, ref_seq);
    send(l, CL_ERROR, body, (uint8_t)sizeof body);
}

static void go_neutral(cl_link *l)
{
    l->steer_out = 0;
    l->throttle_out = 0;
    l->brake = 1;
}

void cl_init(cl_link *l, cl_write_fn write, void *ctx)
{
    uint8_t *p = (uint8_t *)l;
    size_t i;
    for (i = 0; i < sizeof *l; i++) p[i] = 0;
    l->write = write;
    l->write_ctx = ctx;
    l->cmd_timeout_ms = 200u;
    go_neutral(l);
}

uint16_t cl_flags(const cl_link *l)
{
    uint16_t f = l->extra_flags;
    if (l->armed) f |= CL_F_ARMED;
    if (l->failsafe) f |= CL_F_FAILSAFE;
    if (l->brake) f |= CL_F_BRAKE;
    return f;
}

uint32_t cl_counter(const cl_link *l, uint8_t which)
{
    return which < CL_C_COUNT ? l->counters[which] : 0u;
}

void cl_outputs(const cl_link *l, int16_t *steer, int16_t *throttle, uint8_t *brake)
{
    *steer = l->steer_out;
    *throttle = l->throttle_out;
    *brake = l->brake;
}

size_t cl_link_size(void) { return sizeof(cl_link); }

void cl_send_heartbeat(cl_link *l, uint32_t now_ms)
{
    uint8_t body[BODY_HEARTBEAT];
    uint16_t f = cl_flags(l);
    if (l->echo_valid) f |= CL_F_ECHO;
    put_u32(body, now_ms);
    put_u16(body + 4, f);
    put_u16(body + 6, l->echo_seq);
    send(l, CL_HEARTBEAT, body, (uint8_t)sizeof body);
}

void cl_send_telemetry(cl_link *l, uint32_t now_ms, const cl_sensors *s)
{
    uint8_t b[BODY_TELEMETRY];
    uint32_t errs = 0;
    uint8_t c;
    l->extra_flags = (uint8_t)(s->flags & (CL_F_LOW_BATTERY | CL_F_SIMULATED));
    for (c = CL_C_CRC; c <= CL_C_OVERFLOW; c++) errs += l->counters[c];
    put_u32(b, now_ms);
    put_u16(b + 4, from_i16(s->speed_mm_s));
    put_u32(b + 6, (uint32_t)s->erpm);
    put_u16(b + 10, from_i16(l->steer_out));
    put_u16(b + 12, from_i16(l->throttle_out));
    put_u16(b + 14, s->battery_mv);
    put_u16(b + 16, from_i16(s->yaw_rate_mrad_s));
    put_u16(b + 18, from_i16(s->accel_x_mm_s2));
    put_u16(b + 20, from_i16(s->accel_y_mm_s2));
    put_u16(b + 22, cl_flags(l));
    put_u16(b + 24, l->last_cmd_seq);
    put_u16(b + 26, (uint16_t)(errs & 0xFFFFu));
    send(l, CL_TELEMETRY, b, (uint8_t)sizeof b);
}

/* Gap counting over every valid host frame, as protocol.SeqTracker does. */
static void track_seq(cl_link *l, uint16_t seq)
{
    uint16_t d;
    if (!l->rx_seq_valid) {
        l->rx_seq = seq;
        l->rx_seq_valid = 1;
        return;
    }
    d = (uint16_t)(seq - l->rx_seq);
    if (d == 0u) return;                                        /* duplicate */
    if (d < 0x8000u) {
        l->counters[CL_C_GAPS] += (uint32_t)(d - 1u);
        l->rx_seq = seq;
    } else if (d < (uint16_t)(0x10000UL - CL_REORDER_WINDOW)) {
        l->rx_seq = seq;                                        /* the host restarted */
    }                                                           /* else: late, keep the base */
}

static int reject(cl_link *l, uint8_t code, uint16_t ref_seq, uint8_t reply)
{
    static const uint8_t counter_of[CL_E_OVERFLOW + 1] = {
        0, CL_C_CRC, CL_C_COBS, CL_C_LENGTH, CL_C_TYPE, CL_C_VERSION, CL_C_VALUE, CL_C_OVERFLOW};
    l->counters[counter_of[code]]++;
    /* Only frames that passed the CRC get an ERROR back: the host really sent those. Line noise is
     * counted (TELEMETRY.rx_errors) but answering it would just add traffic to a noisy line. */
    if (reply) send_error(l, code, ref_seq);
    return -(int)code;
}

static int handle_command(cl_link *l, const uint8_t *b, uint16_t seq, uint32_t now_ms)
{
    int16_t steer = get_i16(b), throttle = get_i16(b + 2);
    uint16_t timeout = get_u16(b + 4);
    uint16_t d = (uint16_t)(seq - l->last_cmd_seq);

    if (steer < -CL_PERMILLE || steer > CL_PERMILLE || throttle < -CL_PERMILLE ||
        throttle > CL_PERMILLE || timeout < CL_TIMEOUT_MIN_MS || timeout > CL_TIMEOUT_MAX_MS)
        return reject(l, CL_E_VALUE, seq, 1);
    l->counters[CL_C_RX_OK]++;
    track_seq(l, seq);
    if (!l->armed) {
        l->counters[CL_C_NOT_ARMED]++;
        send_error(l, CL_E_NOT_ARMED, seq);
        return -CL_E_NOT_ARMED;
    }
    /* Never apply a command older than one already applied (reordered or duplicated). */
    if (l->cmd_valid && (d == 0u || d >= (uint16_t)(0x10000UL - CL_REORDER_WINDOW))) {
        l->counters[CL_C_LATE]++;
        return 0;
    }
    l->steer_out = clamp_permille(steer);
    l->throttle_out = clamp_permille(throttle);
    l->brake = 0;
    l->failsafe = 0;
    l->cmd_valid = 1;
    l->last_cmd_seq = seq;
    l->last_cmd_ms = now_ms;
    l->cmd_timeout_ms = timeout;
    return CL_COMMAND;
}

static int handle_frame(cl_link *l, uint8_t len, uint32_t now_ms)
{
    const uint8_t *p = l->rx;
    uint16_t seq, crc_rx;
    uint8_t type, want;

    if (len < CL_HEADER_LEN + 2u) return reject(l, CL_E_LENGTH, NO_SEQ, 0);
    crc_rx = get_u16(p + len - 2u);
    if (cl_crc16(p, (uint16_t)(len - 2u)) != crc_rx) return reject(l, CL_E_CRC, NO_SEQ, 0);
    seq = get_u16(p + 2);
    type = p[1];
    if (p[0] != CL_VERSION) return reject(l, CL_E_VERSION, seq, 1);
    want = body_len_for(type);
    if (want == 0xFFu) return reject(l, CL_E_TYPE, seq, 1);
    if ((uint8_t)(len - CL_HEADER_LEN - 2u) != want) return reject(l, CL_E_LENGTH, seq, 1);
    p += CL_HEADER_LEN;

    switch (type) {
    case CL_COMMAND:
        return handle_command(l, p, seq, now_ms);
    case CL_HEARTBEAT:
        if (get_u16(p + 4) & (uint16_t)~CL_F_MASK) return reject(l, CL_E_VALUE, seq, 1);
        l->counters[CL_C_RX_OK]++;
        track_seq(l, seq);
        l->echo_seq = seq;
        l->echo_valid = 1;
        cl_send_heartbeat(l, now_ms); /* the host times this echo: answer at once */
        return CL_HEARTBEAT;
    case CL_ARM:
        l->counters[CL_C_RX_OK]++;
        l->rx_seq = seq; /* a new session starts here: rebase the gap counter */
        l->rx_seq_valid = 1;
        l->armed = 1;
        l->failsafe = 1; /* armed but not yet commanded: neutral + brake until the first COMMAND */
        l->cmd_valid = 0;
        go_neutral(l);
        return CL_ARM;
    case CL_DISARM:
        l->counters[CL_C_RX_OK]++;
        track_seq(l, seq);
        l->armed = 0;
        l->failsafe = 0;
        l->cmd_valid = 0;
        go_neutral(l);
        return CL_DISARM;
    case CL_ERROR:
        if (p[0] < 1u || p[0] > CL_E_WATCHDOG) return reject(l, CL_E_VALUE, seq, 1);
        l->counters[CL_C_RX_OK]++;
        track_seq(l, seq);
        return CL_ERROR;
    default: /* TELEMETRY only flows car -> host */
        return reject(l, CL_E_TYPE, seq, 1);
    }
}

int cl_feed(cl_link *l, uint8_t byte, uint32_t now_ms)
{
    uint8_t enc, len, left;
    if (byte == 0u) {
        enc = l->rx_enc;
        len = l->rx_len;
        left = l->cobs_left;
        l->rx_enc = 0;
        l->rx_len = 0;
        l->cobs_left = 0;
        l->cobs_code = 0;
        if (enc == 0u) return 0; /* idle fill between frames */
        if (enc > CL_MAX_ENCODED) return reject(l, CL_E_OVERFLOW, NO_SEQ, 0);
        if (left != 0u) return reject(l, CL_E_COBS, NO_SEQ, 0);
        return handle_frame(l, len, now_ms);
    }
    if (l->rx_enc > CL_MAX_ENCODED) return 0; /* overflowing: drop until the next delimiter */
    l->rx_enc++;
    if (l->rx_enc > CL_MAX_ENCODED) return 0;
    if (l->cobs_left == 0u) {
        /* a code byte; the block before it ended in an implicit zero unless it was a full 0xFF block */
        if (l->cobs_code != 0u && l->cobs_code != 0xFFu && l->rx_len < CL_MAX_DECODED) l->rx[l->rx_len++] = 0u;
        l->cobs_code = byte;
        l->cobs_left = (uint8_t)(byte - 1u);
    } else {
        if (l->rx_len < CL_MAX_DECODED) l->rx[l->rx_len++] = byte;
        l->cobs_left--;
    }
    return 0;
}

void cl_tick(cl_link *l, uint32_t now_ms)
{
    /* unsigned subtraction: correct across the 49.7-day millis() wrap */
    if (l->armed && !l->failsafe && (uint32_t)(now_ms - l->last_cmd_ms) > l->cmd_timeout_ms) {
        l->failsafe = 1;
        l->counters[CL_C_FAILSAFE]++;
        go_neutral(l);
        send_error(l, CL_E_WATCHDOG, l->last_cmd_seq);
    }
}
