# encoders.cmake — errno-free libm calls in the VAE's elementwise code so sqrt and the inlined
# polynomial exp vectorize (NaN/inf semantics untouched; no -ffast-math), as cmake/cpu.cmake does for the backend.
set_source_files_properties(${CMAKE_CURRENT_SOURCE_DIR}/src/models/vae_blocks.c
  PROPERTIES COMPILE_OPTIONS "-fno-math-errno;-fno-trapping-math")
