"""`edgectl run`: a fixed-rate control loop between a policy backend and a vehicle link, with watchdogs,
the STL shield, per-tick timing and a flight log."""
