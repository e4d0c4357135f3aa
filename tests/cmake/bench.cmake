# bench.cmake — the C benchmark programs run once in their quick mode, so they cannot rot unnoticed
# (bench_core segfaulted on its first GEMM for lack of sf_backends_init, and nothing ran it)
add_test(NAME bench/core_quick COMMAND bench_core quick WORKING_DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR})
set_tests_properties(bench/core_quick PROPERTIES PASS_REGULAR_EXPRESSION "cast_f32_bf16 [0-9.]+ GB/s")
