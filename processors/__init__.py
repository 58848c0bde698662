"""coffea processors: thin ProcessorABC wrappers around sparkad pure functions."""
import warnings

# NanoAODSchema re-derives Photon_charge and warns about cross-references that 2012-layout files
# do not have (GenPart in data); harmless, and on Dask workers they would flood the console.
warnings.filterwarnings("ignore", message=r"Branch \w+ already exists")
warnings.filterwarnings("ignore", message=r".*[Mm]issing cross-reference")
