# formats.cmake — libraries the io layer needs beyond the top-level list (zlib: zip CRC-32 and inflate).
find_package(ZLIB REQUIRED)
target_link_libraries(sfwb_flags INTERFACE ZLIB::ZLIB)
