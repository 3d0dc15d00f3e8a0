"""HeteroCloud's fixed parameters: server generations and workload distributions (docs/design.md,
sections 3.1-3.2).

Plain numbers, importable without JAX, so that a configuration can be checked before JAX loads.
Units: cores in CPU cores, memory in GB, work in steps at efficiency 1.0.
"""

# generation: (share of servers, cores, memory GB, efficiency low, efficiency high)
GENERATIONS = (
    (0.30, 16.0, 128.0, 0.70, 0.80),
    (0.40, 32.0, 128.0, 0.85, 0.95),
    (0.30, 64.0, 192.0, 0.98, 1.08),
)


CPU_JOB, MEM_JOB = 0, 1

CPU_CORES_ALPHA = 1.7  # Pareto tail index of CPU-intensive jobs' cores
CPU_CORES_MIN = 1.0
CPU_CORES_CAP = 32.0
MEM_GB_ALPHA = 2.2  # Pareto tail index of memory-intensive jobs' memory
MEM_GB_MIN = 4.0
MEM_GB_CAP = 96.0
MEM_JOB_CORES = (0.5, 8.0)  # CPU demand of a memory job grows with its memory over this range
WORK_ALPHA = 2.0  # Pareto tail index of work; x_min 10 gives a mean of 19 steps after the cap
WORK_MIN = 10.0
WORK_CAP = 200.0
CPU_SHARE = 0.6  # cluster-wide share of CPU-intensive jobs
MAX_RATE_MULTIPLIER = 1.2  # agents' arrival-rate multipliers rho_i ~ U[0.8, 1.2]
