# tests/cmake/dist.cmake — sfwb.dist across MPI processes: emu:0 per process (one emulated GPU per rank,
# as real runs use one process per GPU) on 2 and 4 ranks, and collectives that cannot complete (a rank
# hangs, dies, or calls another op) failing within the timeout with the op and the ranks named.
# 4 ranks are oversubscribed on the machine's 2 cores.
if(MPI_C_FOUND AND MPIEXEC_EXECUTABLE)
  set(SF_MPIRUN ${MPIEXEC_EXECUTABLE} --allow-run-as-root --oversubscribe)
  set(SF_MPI_ENV "")
  if(SFWB_ASAN) # Open MPI's plugins leak at start-up (unloaded modules LSan can't suppress by name)
    set(SF_MPI_ENV "ASAN_OPTIONS=detect_leaks=0")
  endif()
  foreach(np 2 4)
    add_test(NAME dist/emu_mpi_${np}
      COMMAND ${SF_MPIRUN} -np ${np} $<TARGET_FILE:sfwb> tests/lua/dist/emu_mpi.lua
      WORKING_DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR})
    set_tests_properties(dist/emu_mpi_${np} PROPERTIES TIMEOUT 120 PROCESSORS 2 ENVIRONMENT "${SF_MPI_ENV}")
  endforeach()
  # the survivors print FAULT-OK lines; the job then aborts on purpose (exit status not checked)
  foreach(fault mismatch hang die)
    foreach(dev cpu emu:0)
      string(REPLACE ":0" "" devname ${dev})
      set(np 2)
      if(fault STREQUAL "hang")
        set(np 3)
      endif()
      add_test(NAME dist/fault_${fault}_${devname}
        COMMAND ${SF_MPIRUN} -np ${np} $<TARGET_FILE:sfwb> tests/lua/dist/fault.lua ${fault} ${dev}
        WORKING_DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR})
      set(pass "FAULT-OK rank 0 .*FAULT-OK2 rank 0")
      if(fault STREQUAL "die") # Open MPI may end the job on the death before the timeout: either is clean
        set(pass "FAULT-OK rank 0 .*FAULT-OK2 rank 0|rank 1 .*exited on signal 9")
      endif()
      set_tests_properties(dist/fault_${fault}_${devname} PROPERTIES TIMEOUT 60 PROCESSORS 2
        ENVIRONMENT "SFWB_FAULT_TIMEOUT=3;${SF_MPI_ENV}"
        PASS_REGULAR_EXPRESSION "${pass}" FAIL_REGULAR_EXPRESSION "FAULT-BAD")
    endforeach()
  endforeach()
endif()

# sharded (FSDP FULL_SHARD) DMD training against the replicated run, 2 and 4 ranks, cpu and emu:0
if(MPI_C_FOUND AND MPIEXEC_EXECUTABLE)
  foreach(np 2 4)
    foreach(dev cpu emu:0)
      string(REPLACE ":0" "" devname ${dev})
      add_test(NAME dist/train_fsdp_${np}_${devname}
        COMMAND ${SF_MPIRUN} -np ${np} $<TARGET_FILE:sfwb> tests/lua/dist/train_fsdp.lua ${dev}
        WORKING_DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR})
      set(steps 2)
      if(devname STREQUAL "emu") # the emulator is slow: one step (the optimizer's later steps run on cpu)
        set(steps 1)
      endif()
      set_tests_properties(dist/train_fsdp_${np}_${devname} PROPERTIES TIMEOUT 240 PROCESSORS 2
        ENVIRONMENT "SFWB_FSDP_TMP=${CMAKE_CURRENT_BINARY_DIR};SFWB_FSDP_STEPS=${steps};${SF_MPI_ENV}")
    endforeach()
  endforeach()
endif()

# per-block FSDP (each transformer block its own unit, gathered around its forward and recomputation):
# the replicated run's weights, at most two blocks held, the step's peak memory against the replica's
if(MPI_C_FOUND AND MPIEXEC_EXECUTABLE)
  foreach(cfg "2;cpu" "4;cpu" "2;emu:0")
    list(GET cfg 0 np)
    list(GET cfg 1 dev)
    string(REPLACE ":0" "" devname ${dev})
    add_test(NAME dist/fsdp_blocks_${np}_${devname}
      COMMAND ${SF_MPIRUN} -np ${np} $<TARGET_FILE:sfwb> tests/lua/dist/fsdp_blocks.lua ${dev}
      WORKING_DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR})
    set_tests_properties(dist/fsdp_blocks_${np}_${devname} PROPERTIES TIMEOUT 300 PROCESSORS 2 ENVIRONMENT "${SF_MPI_ENV}")
  endforeach()
endif()

# process groups (sfwb.dist.split: 2 "nodes" of 2 ranks), and a sharded run's checkpoint resumed at
# another world size (written by 2 ranks, read by 4: a fixture)
if(MPI_C_FOUND AND MPIEXEC_EXECUTABLE)
  foreach(dev cpu emu:0)
    string(REPLACE ":0" "" devname ${dev})
    add_test(NAME dist/groups_4_${devname}
      COMMAND ${SF_MPIRUN} -np 4 $<TARGET_FILE:sfwb> tests/lua/dist/groups.lua ${dev}
      WORKING_DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR})
    set_tests_properties(dist/groups_4_${devname} PROPERTIES TIMEOUT 120 PROCESSORS 2
      ENVIRONMENT "SFWB_DIST_TIMEOUT=15;${SF_MPI_ENV}"
      PASS_REGULAR_EXPRESSION "GROUP-FAULT-OK" FAIL_REGULAR_EXPRESSION "FAIL ")
  endforeach()
  set(SF_RESIZE_DIR ${CMAKE_CURRENT_BINARY_DIR}/fsdp_resize_ckpt)
  add_test(NAME dist/fsdp_resize_write_2
    COMMAND ${SF_MPIRUN} -np 2 $<TARGET_FILE:sfwb> tests/lua/dist/fsdp_resize.lua write ${SF_RESIZE_DIR}
    WORKING_DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR})
  add_test(NAME dist/fsdp_resize_read_4
    COMMAND ${SF_MPIRUN} -np 4 $<TARGET_FILE:sfwb> tests/lua/dist/fsdp_resize.lua read ${SF_RESIZE_DIR}
    WORKING_DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR})
  set_tests_properties(dist/fsdp_resize_write_2 PROPERTIES TIMEOUT 240 PROCESSORS 2 FIXTURES_SETUP fsdp_resize
    ENVIRONMENT "${SF_MPI_ENV}")
  set_tests_properties(dist/fsdp_resize_read_4 PROPERTIES TIMEOUT 300 PROCESSORS 2 FIXTURES_REQUIRED fsdp_resize
    ENVIRONMENT "${SF_MPI_ENV}")
endif()
