"""The public names of gpuptc: what type checkers see, and the one list of them.

:mod:`gpuptc` imports each from the module named here when it is first used.
"""

from gpuptc._version import __version__ as __version__
from gpuptc.errors import GpuptcError as GpuptcError
from gpuptc.fitting.solve import fit as fit
from gpuptc.fitting.solve import fit_ptc as fit_ptc
from gpuptc.inputs.butler import ButlerQuery as ButlerQuery
from gpuptc.inputs.butler import ingest_butler as ingest_butler
from gpuptc.inputs.manifest import ingest as ingest
from gpuptc.measuring.masterbias import (
    MasterBias as MasterBias,
)
from gpuptc.measuring.masterbias import (
    make_master_bias as make_master_bias,
)
from gpuptc.measuring.masterbias import (
    master_biases as master_biases,
)
from gpuptc.measuring.masterbias import (
    read_master_bias as read_master_bias,
)
from gpuptc.measuring.sensor import measure as measure
from gpuptc.products.bf_kernel_file import (
    read_bf_kernel as read_bf_kernel,
)
from gpuptc.products.bf_kernel_file import (
    write_bf_kernel as write_bf_kernel,
)
from gpuptc.products.butler_output import ButlerOutput as ButlerOutput
from gpuptc.products.compare import compare as compare
from gpuptc.products.compare import write_eotest_files as write_eotest_files
from gpuptc.products.cp_pipe_ptc import (
    read_ptc_dataset as read_ptc_dataset,
)
from gpuptc.products.cp_pipe_ptc import (
    write_ptc_dataset as write_ptc_dataset,
)
from gpuptc.products.linearizer import (
    read_linearizer as read_linearizer,
)
from gpuptc.products.linearizer import (
    write_linearizer as write_linearizer,
)
from gpuptc.products.verdict import (
    Thresholds as Thresholds,
)
from gpuptc.products.verdict import (
    amp_verdicts as amp_verdicts,
)
from gpuptc.products.verdict import (
    sensor_verdicts as sensor_verdicts,
)
from gpuptc.raws.exposure import (
    RawExposure as RawExposure,
)
from gpuptc.raws.exposure import (
    RawReadError as RawReadError,
)
from gpuptc.raws.exposure import (
    read_raw as read_raw,
)
from gpuptc.running.job import run as run
from gpuptc.running.refit import refit as refit
from gpuptc.simulation.simulate import SimulationConfig as SimulationConfig
from gpuptc.simulation.simulate import simulate as simulate
