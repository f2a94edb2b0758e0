/* car_link: the car side of the edgectl RC car serial protocol (see ../PROTOCOL.md).
 *
 * Portable C99: no malloc, no floats, no library beyond <stdint.h>/<stddef.h>; every size is fixed
 * at compile time, and `int` may be 16 bits (AVR). The board glue (edgectl_car.ino) feeds received
 * bytes to cl_feed(), calls cl_tick() every loop, applies cl_outputs() to the servo and the ESC,
 * and calls cl_send_telemetry()/cl_send_heartbeat() at its own rates.
 *
 * The Python twin is firmware_bridge/sim/rccar/car_core.py; the tests compile this file for the host
 * and hold both to the same bytes and the same verdicts.
 */
#ifndef CAR_LINK_H
#define CAR_LINK_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CL_VERSION 1u

/* message types */
#define CL_HEARTBEAT 1u
#define CL_COMMAND 2u
#define CL_TELEMETRY 3u
#define CL_ARM 4u
#define CL_DISARM 5u
#define CL_ERROR 6u

/* status flags (HEARTBEAT.flags, TELEMETRY.flags) */
#define CL_F_ARMED 0x01u
#define CL_F_FAILSAFE 0x02u
#define CL_F_ECHO 0x04u
#define CL_F_LOW_BATTERY 0x08u
#define CL_F_SIMULATED 0x10u
#define CL_F_BRAKE 0x20u
#define CL_F_MASK 0x3Fu

/* ERROR codes; cl_feed() returns the negated code for a rejected frame */
#define CL_E_CRC 1
#define CL_E_COBS 2
#define CL_E_LENGTH 3
#define CL_E_TYPE 4
#define CL_E_VERSION 5
#define CL_E_VALUE 6
#define CL_E_OVERFLOW 7
#define CL_E_NOT_ARMED 8
#define CL_E_WATCHDOG 9

/* sizes: header 4 + largest body (TELEMETRY 28) + CRC 2; COBS adds exactly 1 byte below 254 */
#define CL_HEADER_LEN 4u
#define CL_MAX_BODY 28u
#define CL_MAX_DECODED (CL_HEADER_LEN + CL_MAX_BODY + 2u)
#define CL_MAX_ENCODED (CL_MAX_DECODED + 1u)
#define CL_MAX_FRAME (CL_MAX_ENCODED + 1u) /* with the 0x00 delimiter */

#define CL_PERMILLE 1000
#define CL_TIMEOUT_MIN_MS 20u
#define CL_TIMEOUT_MAX_MS 5000u
#define CL_REORDER_WINDOW 1024u

/* counters (cl_counter) */
enum {
    CL_C_RX_OK = 0,  /* valid frames */
    CL_C_CRC,
    CL_C_COBS,
    CL_C_LENGTH,
    CL_C_TYPE,
    CL_C_VERSION,
    CL_C_VALUE,
    CL_C_OVERFLOW,
    CL_C_NOT_ARMED,  /* valid COMMANDs refused because disarmed */
    CL_C_LATE,       /* valid COMMANDs older than the last one applied: ignored */
    CL_C_GAPS,       /* host frames missing by seq */
    CL_C_FAILSAFE,   /* watchdog trips */
    CL_C_TX,         /* frames sent */
    CL_C_COUNT
};

typedef void (*cl_write_fn)(void *ctx, const uint8_t *data, uint16_t len);

/* What the board measures; the link adds outputs, flags and counters to make a TELEMETRY. */
typedef struct {
    int16_t speed_mm_s;
    int32_t erpm;
    uint16_t battery_mv;
    int16_t yaw_rate_mrad_s;
    int16_t accel_x_mm_s2;
    int16_t accel_y_mm_s2;
    uint16_t flags; /* extra flags from the board: CL_F_LOW_BATTERY, CL_F_SIMULATED */
} cl_sensors;

typedef struct {
    cl_write_fn write;
    void *write_ctx;
    /* receiver: byte-wise COBS decode straight into rx[] */
    uint8_t rx[CL_MAX_DECODED];
    uint8_t rx_len;      /* decoded bytes so far */
    uint8_t rx_enc;      /* encoded bytes so far (overflow past CL_MAX_ENCODED) */
    uint8_t cobs_left;   /* data bytes left in the current COBS block */
    uint8_t cobs_code;   /* code byte of the current block, 0 before the first */
    /* link */
    uint16_t tx_seq;
    uint16_t rx_seq;
    uint8_t rx_seq_valid;
    uint8_t echo_valid;
    uint16_t echo_seq;
    /* commands and watchdog */
    uint8_t armed;
    uint8_t failsafe;
    uint8_t cmd_valid;  /* a COMMAND was applied since ARM */
    uint16_t last_cmd_seq;
    uint16_t cmd_timeout_ms;
    uint32_t last_cmd_ms;
    int16_t steer_out;
    int16_t throttle_out;
    uint8_t brake;
    uint8_t extra_flags; /* last cl_sensors.flags, echoed in heartbeats */
    uint32_t counters[CL_C_COUNT];
} cl_link;

void cl_init(cl_link *l, cl_write_fn write, void *ctx);

/* One received byte. Returns 0 while a frame is incomplete (or empty), the message type (> 0) of
 * a valid frame just handled, or -CL_E_* for a rejected one. Never blocks; may call write(). */
int cl_feed(cl_link *l, uint8_t byte, uint32_t now_ms);

/* The command watchdog: call at least every few ms. Armed, and no valid COMMAND within its
 * timeout -> failsafe: neutral steering and throttle, brake on, ERROR(WATCHDOG) sent once. */
void cl_tick(cl_link *l, uint32_t now_ms);

void cl_outputs(const cl_link *l, int16_t *steer, int16_t *throttle, uint8_t *brake);
uint16_t cl_flags(const cl_link *l);
uint32_t cl_counter(const cl_link *l, uint8_t which);

void cl_send_heartbeat(cl_link *l, uint32_t now_ms);
void cl_send_telemetry(cl_link *l, uint32_t now_ms, const cl_sensors *s);

/* Build one frame (payload + CRC, COBS, 0x00) into out; returns its length, 0 if cap is too small
 * or the body too long. Exposed for tests and for boards that queue frames themselves. */
uint16_t cl_frame(uint8_t type, uint16_t seq, const uint8_t *body, uint8_t body_len,
                  uint8_t *out, uint16_t cap);

/* CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF (Python: binascii.crc_hqx(data, 0xFFFF)) */
uint16_t cl_crc16(const uint8_t *data, uint16_t len);

size_t cl_link_size(void); /* for ctypes */

#ifdef __cplusplus
}
#endif
#endif /* CAR_LINK_H */
