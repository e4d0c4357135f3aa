# dnnl.cmake — oneDNN (Debian libdnnl-dev) for bf16 GEMMs on the CPU: its matmul primitive runs them on
# AMX/AVX512-BF16 tiles with f32 accumulation. Optional: without it bf16 GEMMs widen to f32 for OpenBLAS.
find_path(SF_DNNL_INCLUDE oneapi/dnnl/dnnl.h)
find_library(SF_DNNL_LIB dnnl)
if(SF_DNNL_INCLUDE AND SF_DNNL_LIB)
  target_include_directories(sfwb_flags INTERFACE ${SF_DNNL_INCLUDE})
  target_compile_definitions(sfwb_flags INTERFACE SF_HAVE_DNNL=1)
  target_link_libraries(sfwb_flags INTERFACE ${SF_DNNL_LIB})
  message(STATUS "sfwb: oneDNN bf16 GEMMs (${SF_DNNL_LIB})")
else()
  message(STATUS "sfwb: oneDNN not found; bf16 GEMMs run as f32 OpenBLAS")
endif()
