# tests/cmake/train.cmake — the DMD trainer on 2 MPI ranks (data parallel, gradients averaged)
if(MPI_C_FOUND AND MPIEXEC_EXECUTABLE)
  add_test(NAME dist/train_dmd_mpi
    COMMAND ${MPIEXEC_EXECUTABLE} --allow-run-as-root --oversubscribe -np 2 $<TARGET_FILE:sfwb> tests/lua/dist/train_dmd_mpi.lua
    WORKING_DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR})
  set_tests_properties(dist/train_dmd_mpi PROPERTIES TIMEOUT 180 PROCESSORS 2)
  if(SFWB_ASAN) # Open MPI's plugins leak at start-up (unloaded modules LSan can't suppress by name)
    set_tests_properties(dist/train_dmd_mpi PROPERTIES ENVIRONMENT "ASAN_OPTIONS=detect_leaks=0")
  endif()
endif()

# exact resume under 2 ranks: every rank's RNG state and data position in the training state
if(MPI_C_FOUND AND MPIEXEC_EXECUTABLE)
  add_test(NAME dist/train_resume_mpi
    COMMAND ${MPIEXEC_EXECUTABLE} --allow-run-as-root --oversubscribe -np 2 $<TARGET_FILE:sfwb> tests/lua/dist/train_resume_mpi.lua
    WORKING_DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR})
  set(resume_env "SFWB_RESUME_TMP=${CMAKE_CURRENT_BINARY_DIR}")
  if(SFWB_ASAN)
    set(resume_env "${resume_env};ASAN_OPTIONS=detect_leaks=0")
  endif()
  set_tests_properties(dist/train_resume_mpi PROPERTIES TIMEOUT 180 PROCESSORS 2 ENVIRONMENT "${resume_env}")
endif()
