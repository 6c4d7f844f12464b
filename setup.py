# A shim for cffi's setuptools hook; all metadata lives in pyproject.toml.
import sysconfig

from setuptools import setup

abi3 = not sysconfig.get_config_var("Py_GIL_DISABLED")
setup(
    cffi_modules=["src/cdbrules/_ffi_build.py:ffibuilder"],
    options={"bdist_wheel": {"py_limited_api": "cp39"}} if abi3 else {},
)
