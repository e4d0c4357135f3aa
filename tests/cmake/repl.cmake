# repl.cmake — the program's command line and its REPL driven through a pseudo-terminal
add_test(NAME app/cli_args COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/tests/app/cli_args.py $<TARGET_FILE:sfwb>
         WORKING_DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR})
add_test(NAME app/repl_pty COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/tests/app/repl_pty.py $<TARGET_FILE:sfwb>
         WORKING_DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR})
set_tests_properties(app/cli_args app/repl_pty PROPERTIES TIMEOUT 120)
