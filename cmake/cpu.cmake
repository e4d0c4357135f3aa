# cpu.cmake — compile flags for the CPU backend: errno-free, trap-free libm calls let sqrt/floor/rint vectorize
# (NaN/inf semantics are untouched; no -ffast-math).
file(GLOB SF_CPU_BACKEND_SOURCES CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/src/backend/cpu/*.c)
set_source_files_properties(${SF_CPU_BACKEND_SOURCES} PROPERTIES COMPILE_OPTIONS "-fno-math-errno;-fno-trapping-math")
