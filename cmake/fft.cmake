# fft.cmake — FFTW (Debian libfftw3-dev, double precision) for sfwb.fft (src/lua/lua_fft.c)
pkg_check_modules(FFTW REQUIRED IMPORTED_TARGET fftw3)
target_link_libraries(sfwb_lib PUBLIC PkgConfig::FFTW)
