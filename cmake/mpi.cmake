# mpi.cmake — MPI (Debian's Open MPI) for sfwb.dist: collectives of CPU tensors across ranks started by
# mpirun/srun, and the NCCL unique-id exchange of the CUDA backend.
find_package(MPI COMPONENTS C)
if(MPI_C_FOUND)
  target_link_libraries(sfwb_flags INTERFACE MPI::MPI_C)
  target_compile_definitions(sfwb_flags INTERFACE SFWB_HAVE_MPI=1)
  message(STATUS "sfwb: MPI ${MPI_C_VERSION} for sfwb.dist (${MPIEXEC_EXECUTABLE})")
else()
  message(STATUS "sfwb: no MPI: sfwb.dist has a world of one rank")
endif()
