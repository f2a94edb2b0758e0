"""Every parser that reads bytes from a vehicle link survives random and corrupted frames (bench/fuzz_parsers.py
runs the same with 100,000 frames each)."""
import importlib.util
from pathlib import Path

spec = importlib.util.spec_from_file_location("fuzz_parsers", Path(__file__).parent.parent / "bench" / "fuzz_parsers.py")
fuzz = importlib.util.module_from_spec(spec)
spec.loader.exec_module(fuzz)


def test_crtp_sim_survives_random_packets_and_still_answers():
    r = fuzz.fuzz_crtp(5000, seed=1)
    assert r["raised"] == 0 and r["still_answers"]


def test_mavlink_parser_never_accepts_a_corrupted_known_message():
    r = fuzz.fuzz_mavlink(10_000, seed=1)
    assert r["parser_raised"] == 0 and r["corrupted_accepted"] == 0


def test_serial_decoder_never_accepts_a_corrupted_frame():
    r = fuzz.fuzz_serial(10_000, seed=1)
    assert r["raised"] == 0 and r["corrupted_accepted"] == 0
