"""Sliding-window counts of send times, for the rate bounds the limiter guarantees."""


def most_within(times, window):
    """The most of ``times`` in any half-open interval ``window`` seconds long."""
    times = sorted(times)
    most, start = 0, 0
    for end, at in enumerate(times):
        while at - times[start] >= window:
            start += 1
        most = max(most, end - start + 1)
    return most
