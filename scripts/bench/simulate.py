"""Time one full-size simulated volume (16 slices, 16 coils, 640 x 320), simulation + writing.

Prints seconds per volume and the ratio to the 10 s target (SPEC 1.4 demo budget); the
one-time atlas load is timed separately. Usage:

    python scripts/bench/simulate.py [--repeats 3] [--sequence AXT2] [--threads N]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch

from monai_cmri.simulate import VolumeSpec, simulate_volume, write_volume
from monai_cmri.simulate.anatomy import load_atlas

TARGET_S = 10.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sequence", default="AXT2")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    start = time.perf_counter()
    load_atlas()
    print(f"atlas load (once per process): {time.perf_counter() - start:.2f} s")
    spec = VolumeSpec(
        name=f"file_brain_{args.sequence}_200_2000001",
        sequence=args.sequence,
        coils=16,
        slices=16,
        readout=640,
        width=320,
        findings=("mass", "wml"),
        annotated=True,
        patient_id="bench",
    )
    times = []
    with tempfile.TemporaryDirectory() as out:
        for repeat in range(args.repeats):
            start, cpu = time.perf_counter(), time.process_time()
            volume = simulate_volume(spec, np.random.default_rng(repeat))
            simulated = time.perf_counter()
            write_volume(volume, out)
            done = time.perf_counter()
            times.append(done - start)
            print(
                f"volume {repeat}: simulate {simulated - start:.2f} s + write {done - simulated:.2f} s "
                f"(CPU {time.process_time() - cpu:.2f} s; other processes on the machine inflate wall time)"
            )
            del volume
    best, median = min(times), float(np.median(times))
    print(f"threads {args.threads}: {median:.2f} s per volume (best {best:.2f} s); "
          f"ratio to the {TARGET_S:.0f} s target: {median / TARGET_S:.2f}")


if __name__ == "__main__":
    main()
