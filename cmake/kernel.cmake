# kernel.cmake — the libraries of the Jupyter kernel inside the program (src/app/kernel*.c): ZeroMQ for
# the sockets, OpenSSL's libcrypto for the HMAC-SHA256 message signatures (Debian libzmq3-dev, libssl-dev).
pkg_check_modules(ZMQ REQUIRED IMPORTED_TARGET libzmq)
pkg_check_modules(OPENSSL REQUIRED IMPORTED_TARGET libcrypto)
add_library(sfwb_kernel_libs INTERFACE)
target_link_libraries(sfwb_kernel_libs INTERFACE PkgConfig::ZMQ PkgConfig::OPENSSL)
