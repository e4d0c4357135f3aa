# tests/cmake/lint.cmake — static checks of the sources: luacheck over lua/ and recipes/ (.luacheckrc)
find_program(SF_LUACHECK luacheck)
if(SF_LUACHECK)
  add_test(NAME lint/luacheck COMMAND ${SF_LUACHECK} --no-color -q lua recipes
    WORKING_DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR})
else()
  # scripts/deps.sh installs lua-check; a machine without it must say so, not pass silently
  add_test(NAME lint/luacheck COMMAND sh -c "echo 'luacheck not found: run scripts/deps.sh (Debian lua-check)'; exit 1")
endif()
