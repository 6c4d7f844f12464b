# The cffi extension built from csrc/ (see _ffi_build.py); its objects are untyped.
from typing import Any

ffi: Any
lib: Any
