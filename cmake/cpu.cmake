# cpu.cmake — compile flags for the CPU backend: errno-free, trap-free libm calls let sqrt/floor/rint vectorize
# (NaN/inf semantics are untouched; no -ffast-math).
file(GLOB SF_CPU_BACKEND_SOURCES CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/src/backend/cpu/*.c)
set_source_files_properties(${SF_CPU_BACKEND_SOURCES} PROPERTIES COMPILE_OPTIONS "-fno-math-errno;-fno-trapping-math")

# the core benchmark (`make bench` runs it through bench/run.sh)
add_executable(bench_core ${CMAKE_CURRENT_SOURCE_DIR}/bench/bench_core.c)
target_link_libraries(bench_core PRIVATE sfwb_lib)
# CUDA_ARCHITECTURES: cmake/cuda.cmake may enable CUDA after this file is read
set_target_properties(bench_core PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR}/bench CUDA_ARCHITECTURES OFF)
