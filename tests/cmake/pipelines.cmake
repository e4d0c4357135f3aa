# pipelines.cmake — a researcher's REPL session (tiny set, rollout, capture, plot) through a pty
add_test(NAME app/repl_session COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/tests/app/repl_session.py $<TARGET_FILE:sfwb>
         WORKING_DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR})
set_tests_properties(app/repl_session PROPERTIES TIMEOUT 300 ENVIRONMENT "SFWB_TEST_TMP=${CMAKE_CURRENT_BINARY_DIR}/test-tmp")
# every recipe answers --help through the program itself, exit status 0
foreach(recipe generate extract_attention compare demo interactive train generate_ode_pairs toy_world toy_world_probe)
  add_test(NAME app/recipe_help_${recipe} COMMAND sfwb recipes/${recipe}.lua --help WORKING_DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR})
  set_tests_properties(app/recipe_help_${recipe} PROPERTIES PASS_REGULAR_EXPRESSION "usage: sfwb recipes/${recipe}.lua")
endforeach()
# a fresh machine: every Python module the tests and benches import comes from a package scripts/deps.sh installs
add_test(NAME app/deps_check COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/tests/app/deps_check.py ${CMAKE_CURRENT_SOURCE_DIR}
         WORKING_DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR})
