# tests/cmake/device.cmake — the device tests: every test that runs sfwb's CUDA backend on a device and
# compares with the CPU. They run on emu:0 in `make test`; `make gpu-check` (scripts/gpu_check.sh) runs
# them once more with SFWB_TEST_DEVICE=cuda:0. Label `device` (ctest -L device), and the list
# build/gpu_tests.txt ("name executable args...", executable relative to the build folder, run from the
# source root) that the GPU run reads, so a build folder copied to a GPU machine needs no ctest paths.
set(SF_DEVICE_TESTS_C test_emu_ops test_autograd_emu test_wan_ref)
set(SF_DEVICE_TESTS_LUA test_tensor_api test_cuda_stream test_conv test_vae test_t5 test_clip test_autograd_emu_wan test_train_dmd
    test_train_objectives test_train_sid test_pipeline test_multistep test_wan test_degenerate_shapes)
set(SF_DEVICE_TEST_LIST "")
foreach(t ${SF_DEVICE_TESTS_C})
  if(TEST c/${t})
    set_tests_properties(c/${t} PROPERTIES LABELS device)
    string(APPEND SF_DEVICE_TEST_LIST "c/${t} tests/${t}\n")
  endif()
endforeach()
foreach(t ${SF_DEVICE_TESTS_LUA})
  if(TEST lua/${t})
    set_tests_properties(lua/${t} PROPERTIES LABELS device)
    string(APPEND SF_DEVICE_TEST_LIST "lua/${t} sfwb tests/lua/${t}.lua\n")
  endif()
endforeach()
file(CONFIGURE OUTPUT ${CMAKE_CURRENT_BINARY_DIR}/gpu_tests.txt CONTENT "${SF_DEVICE_TEST_LIST}")

# make gpu-check DEVICE=emu:0 at tiny sizes (same script, same code path as the GPU run), so it never rots
add_test(NAME gpu/check_emu
  COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/scripts/gpu_check.sh --build ${CMAKE_CURRENT_BINARY_DIR} --device emu:0
          --skip-tests --out ${CMAKE_CURRENT_BINARY_DIR}/test-tmp/gpu_check_emu.json
  WORKING_DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR})
set_tests_properties(gpu/check_emu PROPERTIES TIMEOUT 300 PASS_REGULAR_EXPRESSION "gpu_check: wrote .*gpu_check_emu.json"
  FAIL_REGULAR_EXPRESSION "gpu_check: FAILED")

# the real GPU's per-kernel limits (48 KB static shared memory, 255 registers) on the committed ptxas report,
# which must list every kernel file; and the check must catch a planted over-limit kernel
add_test(NAME gpu/ptxas_limits COMMAND sh scripts/ptxas_check.sh docs/ptxas.txt kernels
  WORKING_DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR})
add_test(NAME gpu/ptxas_limits_catch COMMAND sh scripts/ptxas_check.sh tests/data/ptxas_over_limit.txt tests/data
  WORKING_DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR})
set_tests_properties(gpu/ptxas_limits_catch PROPERTIES PASS_REGULAR_EXPRESSION "50176 bytes of static shared memory > 48 KB")
