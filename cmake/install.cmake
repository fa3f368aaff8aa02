# Install rules: the two libraries (libtaskloop, the loop alone; libtaskloop-service, the
# runtime), the adapters, their public headers, the `taskloop` program, pkg-config
# files (taskloop.pc for the loop, taskloop-service.pc for the runtime, one
# taskloop-<adapter>.pc per adapter built, so that a Kafka-only service links no
# libzmq, and taskloop-plugin.pc for plugins) and a CMake package:
# find_package(taskloop) gives taskloop::taskloop, and the components service, kafka,
# zmq, memory and plugin give taskloop::<component>.
#
# Included last from the top-level CMakeLists.txt, so that every target exists; parts
# whose target was not built (an adapter, the program) are left out.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(_tl_cmake_dir ${CMAKE_INSTALL_LIBDIR}/cmake/taskloop)

# Adapters first: for static linking, a library comes before the ones it uses.
set(_tl_libs)
foreach(_a kafka zmq memory)
  if(TARGET taskloop_${_a})
    set_target_properties(taskloop_${_a} PROPERTIES EXPORT_NAME ${_a})
    list(APPEND _tl_libs taskloop_${_a})
  endif()
endforeach()
list(APPEND _tl_libs taskloop_service taskloop)

install(TARGETS ${_tl_libs} taskloop_plugin EXPORT taskloopTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})

# Public headers: both libraries' and each built adapter's include/taskloop/*.h.
set(_tl_include_dirs ${PROJECT_SOURCE_DIR}/framework/loop/include/taskloop
                     ${PROJECT_SOURCE_DIR}/framework/service/include/taskloop)
foreach(_a kafka zmq memory)
  if(TARGET taskloop_${_a})
    list(APPEND _tl_include_dirs ${PROJECT_SOURCE_DIR}/adapters/${_a}/include/taskloop)
  endif()
endforeach()
foreach(_dir IN LISTS _tl_include_dirs)
  install(DIRECTORY ${_dir}/ DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/taskloop
          FILES_MATCHING PATTERN "*.h")
endforeach()

if(TARGET taskloop_cli)
  # Shared libraries: the installed program finds them in its own prefix, wherever that
  # is, through a run path relative to itself ($ORIGIN/../lib), as the .pc files are.
  get_target_property(_tl_type taskloop TYPE)
  if(_tl_type STREQUAL "SHARED_LIBRARY")
    file(RELATIVE_PATH _tl_bin_to_lib /root/${CMAKE_INSTALL_BINDIR} /root/${CMAKE_INSTALL_LIBDIR})
    set_target_properties(taskloop_cli PROPERTIES INSTALL_RPATH "$ORIGIN/${_tl_bin_to_lib}")
  endif()
  install(TARGETS taskloop_cli RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
endif()

# The pkg-config modules behind the PkgConfig:: targets the libraries link. Which of
# them the installed package needs is read from the targets' link interfaces: a static
# library lists its private ones too (as $<LINK_ONLY:...>), a shared one only its public.
# TL_PKG_DEPS says which library needs which (service:FYAML=libfyaml, ...), so that the
# CMake package asks only for the modules of the libraries a consumer wants: one that
# uses the loop alone needs none of them.
set(_tl_pkg_table FYAML=libfyaml MICROHTTPD=libmicrohttpd JANSSON=jansson SODIUM=libsodium
                  RDKAFKA=rdkafka LIBZMQ=libzmq)
set(TL_PKG_DEPS)
foreach(_lib IN LISTS _tl_libs)
  set(_tl_pc_requires_${_lib})
endforeach()
foreach(_entry IN LISTS _tl_pkg_table)
  string(REPLACE "=" ";" _pair "${_entry}")
  list(GET _pair 0 _prefix)
  list(GET _pair 1 _module)
  foreach(_lib IN LISTS _tl_libs)
    get_target_property(_iface ${_lib} INTERFACE_LINK_LIBRARIES)
    get_target_property(_all ${_lib} LINK_LIBRARIES)
    get_target_property(_export ${_lib} EXPORT_NAME)
    if(NOT _export)
      set(_export ${_lib})
    endif()
    if("${_iface}" MATCHES "PkgConfig::${_prefix}([^A-Za-z0-9_]|$)")
      list(APPEND TL_PKG_DEPS ${_export}:${_entry})
    endif()
    if("${_all}" MATCHES "PkgConfig::${_prefix}([^A-Za-z0-9_]|$)")
      list(APPEND _tl_pc_requires_${_lib} ${_module})
    endif()
  endforeach()
endforeach()

# taskloop.pc: the loop alone (-ltaskloop; pthread). taskloop-service.pc: the runtime, on
# top of taskloop. taskloop-<adapter>.pc: one adapter, on top of taskloop-service, with
# only its own broker library. taskloop-plugin.pc: the headers alone (a plugin takes the
# functions from the program loading it). Static linking needs `pkg-config --static`,
# which adds Requires.private and Libs.private.
set(TL_PC_LIBS_PRIVATE "-pthread")
foreach(_l IN LISTS CMAKE_DL_LIBS)
  string(APPEND TL_PC_LIBS_PRIVATE " -l${_l}")
endforeach()
# From <prefix>/<libdir>/pkgconfig back up to <prefix>.
file(RELATIVE_PATH TL_PC_UP /root/${CMAKE_INSTALL_LIBDIR}/pkgconfig /root)
string(REGEX REPLACE "/$" "" TL_PC_UP "${TL_PC_UP}")
set(_tl_pc_files ${PROJECT_BINARY_DIR}/taskloop.pc ${PROJECT_BINARY_DIR}/taskloop-plugin.pc)
configure_file(${CMAKE_CURRENT_LIST_DIR}/taskloop.pc.in ${PROJECT_BINARY_DIR}/taskloop.pc @ONLY)
configure_file(${CMAKE_CURRENT_LIST_DIR}/taskloop-plugin.pc.in
               ${PROJECT_BINARY_DIR}/taskloop-plugin.pc @ONLY)
foreach(_lib IN LISTS _tl_libs)
  if(_lib STREQUAL "taskloop")
    continue()
  endif()
  get_target_property(TL_PC_LIB ${_lib} OUTPUT_NAME)
  if(NOT TL_PC_LIB)
    set(TL_PC_LIB ${_lib})
  endif()
  list(JOIN _tl_pc_requires_${_lib} " " TL_PC_REQUIRES_PRIVATE)
  if(_lib STREQUAL "taskloop_service")
    set(_pc taskloop-service)
    set(_in taskloop-service.pc.in)
  else()
    get_target_property(TL_PC_ADAPTER ${_lib} EXPORT_NAME)
    set(_pc taskloop-${TL_PC_ADAPTER})
    set(_in taskloop-adapter.pc.in)
  endif()
  configure_file(${CMAKE_CURRENT_LIST_DIR}/${_in} ${PROJECT_BINARY_DIR}/${_pc}.pc @ONLY)
  list(APPEND _tl_pc_files ${PROJECT_BINARY_DIR}/${_pc}.pc)
endforeach()
install(FILES ${_tl_pc_files} DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)

# The CMake package: exported targets, the config that recreates their dependencies,
# and a version file (0.x: only the same minor version is compatible).
install(EXPORT taskloopTargets NAMESPACE taskloop:: DESTINATION ${_tl_cmake_dir}
        FILE taskloopTargets.cmake)
configure_package_config_file(${CMAKE_CURRENT_LIST_DIR}/taskloopConfig.cmake.in
  ${PROJECT_BINARY_DIR}/taskloopConfig.cmake INSTALL_DESTINATION ${_tl_cmake_dir})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/taskloopConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/taskloopConfig.cmake
              ${PROJECT_BINARY_DIR}/taskloopConfigVersion.cmake
        DESTINATION ${_tl_cmake_dir})
