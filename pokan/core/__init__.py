"""The sans-IO core: every decision a node makes, as plain data and functions.

Nothing here touches a socket, a reactor or a clock: time and randomness are
passed in, so the same code runs under Twisted, under ``task.Clock`` in the
tests and ten thousand times in the simulator.
"""
