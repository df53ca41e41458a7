"""Time budgets and the cosine schedule's rate, as plain arithmetic (the Keras callbacks that
use them are in kws.train.callbacks). Standard library only."""

import math


def stop_reason(used, epochs_done, epochs, minutes, cpu_minutes, cap_minutes):
    """Which budget ends training after this epoch, or None to go on."""
    if minutes and used["wall_seconds"] >= minutes * 60:
        return "wall-clock budget"
    if cpu_minutes and used["cpu_seconds"] >= cpu_minutes * 60:
        return "CPU budget"
    if cap_minutes and used["wall_seconds"] >= cap_minutes * 60:
        return "wall-clock cap"
    return "epochs" if epochs and epochs_done >= epochs else None


def budget_fraction(used, minutes, cpu_minutes):
    """The larger share of the wall and CPU budgets that `used` spent (0 with no budget)."""
    return max(used["wall_seconds"] / (minutes * 60) if minutes else 0,
               used["cpu_seconds"] / (cpu_minutes * 60) if cpu_minutes else 0)


def budget_spent(state, args):
    """A resumed run whose saved time use already passed this run's budget is finished."""
    used = (state or {}).get("time_used")
    return bool(used) and (budget_fraction(used, args.max_minutes, args.max_cpu_minutes) >= 1
                           or bool(args.cap_minutes and used["wall_seconds"]
                                   >= args.cap_minutes * 60))


def cosine_learning_rate(progress, peak, floor, warmup=1.0):
    """A half cosine from peak (progress 0) to floor (progress 1), times a warm-up factor
    in [0.1, 1] that kws.train.callbacks.make_cosine_callback raises linearly over the first
    --warmup_epochs."""
    rate = floor + (peak - floor) * 0.5 * (1 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))
    return rate * warmup
