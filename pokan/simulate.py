"""``python -m pokan.simulate``: the simulator's command line (see pokan.sim)."""

from pokan.sim.command import main

if __name__ == "__main__":
    raise SystemExit(main())
