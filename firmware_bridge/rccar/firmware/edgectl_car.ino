/* edgectl_car: the RC car's MCU end of the edgectl serial link (../PROTOCOL.md).
 *
 * Board: any Arduino-class board with the Servo library (Uno/Nano: ATmega328P, 16 MHz, 2 KB RAM;
 * the link state is ~120 bytes, no heap). Build: copy this folder to one named edgectl_car/
 * (the IDE wants folder == sketch name), then open it or
 *   arduino-cli compile --fqbn arduino:avr:uno edgectl_car && arduino-cli upload -p /dev/ttyACM0 --fqbn arduino:avr:uno edgectl_car
 *
 * Pins (change below):
 *   D9   steering servo signal        (1000..2000 us, 1500 = straight; +steer = left)
 *   D10  ESC signal                   (1000..2000 us, 1500 = neutral; +throttle = forward)
 *   D2   wheel speed sensor (INT0)    hall/optical, WHEEL_PULSES_PER_REV pulses per wheel turn
 *   A0   battery through a divider    BATTERY_MV_PER_COUNT mV per ADC count
 *   D13  status LED                   off: disarmed, on: armed and driven, blinking: failsafe
 *   USB serial (D0/D1) at 115200 8N1  to the host (RcCarLink)
 * Servo and ESC grounds go to the board's GND; power the servo from the ESC's BEC, not the board.
 *
 * Behaviour lives in car_link.c (tested on the host); this file only moves numbers to pins.
 */
#include <Servo.h>

#include "car_link.h"

#define PIN_STEER 9
#define PIN_ESC 10
#define PIN_WHEEL 2
#define PIN_BATTERY A0
#define PIN_LED 13

#define SERVO_CENTER_US 1500
#define SERVO_RANGE_US 500        /* +-1000 per mille -> +-500 us */
#define STEER_SIGN 1              /* -1 if +steer turns your car right */
#define ESC_NEUTRAL_US 1500
#define ESC_RANGE_US 500
/* Brake output. 1500 (neutral) relies on the ESC's drag brake and can never reverse the car.
 * Many car ESCs brake on a pulse below neutral while rolling forward; set e.g. 1250 for active
 * braking only if yours does not go into reverse with it held. */
#define ESC_BRAKE_US 1500

#define WHEEL_PULSES_PER_REV 1
#define WHEEL_CIRCUMFERENCE_MM 336 /* 107 mm wheel (Traxxas Slash) */
#define BATTERY_MV_PER_COUNT 15    /* 5 V ref, 10k/4.7k divider: 4.88 mV * 3.13 */
#define BATTERY_LOW_MV 7000        /* 2S LiPo */

#define TELEMETRY_PERIOD_MS 20     /* 50 Hz */
#define HEARTBEAT_PERIOD_MS 200    /* 5 Hz */

static cl_link link_state;
static Servo steering;
static Servo esc;
static volatile uint16_t wheel_pulses;
static uint32_t last_telemetry_ms, last_heartbeat_ms;

static void write_serial(void *ctx, const uint8_t *data, uint16_t len)
{
    (void)ctx;
    Serial.write(data, len);
}

static void on_wheel_pulse(void) { wheel_pulses++; }

static void apply_outputs(void)
{
    int16_t steer, throttle;
    uint8_t brake;
    cl_outputs(&link_state, &steer, &throttle, &brake);
    steering.writeMicroseconds(SERVO_CENTER_US + STEER_SIGN * (int)((int32_t)steer * SERVO_RANGE_US / 1000));
    if (brake) {
        esc.writeMicroseconds(ESC_BRAKE_US);
    } else {
        esc.writeMicroseconds(ESC_NEUTRAL_US + (int)((int32_t)throttle * ESC_RANGE_US / 1000));
    }
}

static void send_telemetry(uint32_t now, uint32_t dt_ms)
{
    cl_sensors s;
    uint16_t pulses;
    int16_t steer, throttle;
    uint8_t brake;
    int32_t speed;

    noInterrupts();
    pulses = wheel_pulses;
    wheel_pulses = 0;
    interrupts();
    /* one sensor, no direction: take the sign of the throttle output (no reverse in this firmware) */
    cl_outputs(&link_state, &steer, &throttle, &brake);
    speed = dt_ms ? (int32_t)pulses * WHEEL_CIRCUMFERENCE_MM * 1000L / WHEEL_PULSES_PER_REV / (int32_t)dt_ms : 0;
    if (speed > 32767) speed = 32767;
    s.speed_mm_s = (int16_t)(throttle < 0 ? 0 : speed);
    s.erpm = 0;                /* no motor sensor on a PWM ESC: the host uses speed_mm_s */
    s.battery_mv = (uint16_t)((uint32_t)analogRead(PIN_BATTERY) * BATTERY_MV_PER_COUNT);
    s.yaw_rate_mrad_s = 0;     /* no IMU wired: fill these from your IMU driver (body z up, x forward) */
    s.accel_x_mm_s2 = 0;
    s.accel_y_mm_s2 = 0;
    s.flags = s.battery_mv < BATTERY_LOW_MV ? CL_F_LOW_BATTERY : 0;
    cl_send_telemetry(&link_state, now, &s);
}

void setup()
{
    pinMode(PIN_LED, OUTPUT);
    pinMode(PIN_WHEEL, INPUT_PULLUP);
    steering.attach(PIN_STEER);
    esc.attach(PIN_ESC);
    cl_init(&link_state, write_serial, 0);
    apply_outputs(); /* neutral + brake before anything else: the ESC arms on neutral */
    attachInterrupt(digitalPinToInterrupt(PIN_WHEEL), on_wheel_pulse, RISING);
    Serial.begin(115200);
}

void loop()
{
    uint32_t now = millis();
    uint16_t flags;

    while (Serial.available() > 0) {
        cl_feed(&link_state, (uint8_t)Serial.read(), now);
    }
    cl_tick(&link_state, now);
    apply_outputs();

    if ((uint32_t)(now - last_telemetry_ms) >= TELEMETRY_PERIOD_MS) {
        send_telemetry(now, now - last_telemetry_ms);
        last_telemetry_ms = now;
    }
    if ((uint32_t)(now - last_heartbeat_ms) >= HEARTBEAT_PERIOD_MS) {
        cl_send_heartbeat(&link_state, now);
        last_heartbeat_ms = now;
    }
    flags = cl_flags(&link_state);
    digitalWrite(PIN_LED, (flags & CL_F_FAILSAFE) ? ((now >> 7) & 1u) : (flags & CL_F_ARMED) ? HIGH : LOW);
}
