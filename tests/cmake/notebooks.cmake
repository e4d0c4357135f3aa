# notebooks.cmake — the Jupyter kernel (`sfwb --kernel`) driven over its sockets by jupyter_client
add_test(NAME app/kernel_protocol COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/tests/app/kernel_protocol.py $<TARGET_FILE:sfwb>
         WORKING_DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR})
set_tests_properties(app/kernel_protocol PROPERTIES TIMEOUT 180 ENVIRONMENT "SFWB_TEST_TMP=${CMAKE_CURRENT_BINARY_DIR}/test-tmp")
