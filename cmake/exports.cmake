# The `taskloop` program exports the public API (every tl_* function its installed
# headers declare, and nothing else) to the plugins it loads: a plugin .so is built
# without the libraries (static archives are not position-independent) and takes
# tl_register_handler and the rest from the program that opens it.
#
# The list of names comes from the public headers at configure time, as a linker
# dynamic list (taskloop.dynlist in the build tree). With static libraries the program
# also takes in every member of them (--whole-archive), so that a function the program
# itself never calls is there for a plugin; with shared ones the libraries export the
# API themselves and the program needs neither.
#
# Included from the top-level CMakeLists.txt once every target exists.
if(NOT TARGET taskloop_cli)
  return()
endif()

set(_tl_api_headers)
foreach(_dir framework/loop framework/service adapters/kafka adapters/zmq adapters/memory)
  get_filename_component(_a ${_dir} NAME)
  if(_dir MATCHES "^adapters/" AND NOT TARGET taskloop_${_a})
    continue()
  endif()
  file(GLOB _h ${PROJECT_SOURCE_DIR}/${_dir}/include/taskloop/*.h)
  list(APPEND _tl_api_headers ${_h})
endforeach()
set(_tl_api_names)
foreach(_h IN LISTS _tl_api_headers)
  set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${_h})
  file(READ ${_h} _text)
  # A declaration names the function right before its "(": `int tl_x(`. Names only
  # mentioned in comments are functions of the API too; inline ones define no symbol,
  # which a dynamic list allows.
  string(REGEX MATCHALL "tl_[a-z0-9_]+[ \t]*\\(" _found "${_text}")
  foreach(_f IN LISTS _found)
    string(REGEX REPLACE "[ \t]*\\($" "" _f "${_f}")
    list(APPEND _tl_api_names ${_f})
  endforeach()
endforeach()
list(REMOVE_DUPLICATES _tl_api_names)
list(SORT _tl_api_names)
list(JOIN _tl_api_names ";\n  " _tl_dynlist)
file(CONFIGURE OUTPUT ${PROJECT_BINARY_DIR}/taskloop.dynlist
     CONTENT "{\n  ${_tl_dynlist};\n};\n")

get_target_property(_tl_type taskloop_service TYPE)
if(_tl_type STREQUAL "STATIC_LIBRARY")
  set(_tl_archives)
  foreach(_lib taskloop_kafka taskloop_zmq taskloop_memory taskloop_service taskloop)
    if(TARGET ${_lib})
      list(APPEND _tl_archives "$<TARGET_FILE:${_lib}>")
    endif()
  endforeach()
  list(JOIN _tl_archives " " _tl_archives)
  target_link_options(taskloop_cli PRIVATE
    "SHELL:-Wl,--dynamic-list=${PROJECT_BINARY_DIR}/taskloop.dynlist"
    "SHELL:-Wl,--whole-archive ${_tl_archives} -Wl,--no-whole-archive")
  set_property(TARGET taskloop_cli APPEND PROPERTY LINK_DEPENDS
               ${PROJECT_BINARY_DIR}/taskloop.dynlist)
endif()
