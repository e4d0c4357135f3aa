# notebooks.cmake — the Jupyter kernel (`sfwb --kernel`) driven over its sockets by jupyter_client
add_test(NAME app/kernel_protocol COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/tests/app/kernel_protocol.py $<TARGET_FILE:sfwb>
         WORKING_DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR})
set_tests_properties(app/kernel_protocol PROPERTIES TIMEOUT 180 ENVIRONMENT "SFWB_TEST_TMP=${CMAKE_CURRENT_BINARY_DIR}/test-tmp")
# every notebook in notebooks/ executed headless (nbclient) with the installed kernel on the demo set;
# the setup installs the kernelspec into a temp prefix (JUPYTER_PATH) and builds the demo set once
set(SF_NB_ENV "SFWB_TEST_TMP=${CMAKE_CURRENT_BINARY_DIR}/test-tmp")
add_test(NAME app/notebooks_setup COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/tests/app/run_notebooks.py $<TARGET_FILE:sfwb> --setup
         WORKING_DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR})
set_tests_properties(app/notebooks_setup PROPERTIES FIXTURES_SETUP sf_notebooks TIMEOUT 300 ENVIRONMENT "${SF_NB_ENV}")
file(GLOB SF_NOTEBOOKS CONFIGURE_DEPENDS notebooks/*.ipynb)
foreach(nb ${SF_NOTEBOOKS})
  get_filename_component(name ${nb} NAME_WE)
  add_test(NAME notebook/${name} COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/tests/app/run_notebooks.py $<TARGET_FILE:sfwb> ${nb}
           WORKING_DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR})
  set_tests_properties(notebook/${name} PROPERTIES FIXTURES_REQUIRED sf_notebooks TIMEOUT 300 ENVIRONMENT "${SF_NB_ENV}")
endforeach()
