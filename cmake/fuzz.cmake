# The fuzz targets (tests/fuzz/README.md). With TL_FUZZ=ON they are libFuzzer programs:
# every library is then built with coverage for the fuzzer and with ASan and UBSan, so
# a finding stops the run; only clang has libFuzzer, so that build dir is a clang one of
# its own. Otherwise (with the tests) each is linked with tests/fuzz/replay.c and runs
# its seeds once as a unit test, so the targets build and their seeds pass everywhere.
if(TL_FUZZ)
  if(NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "TL_FUZZ needs clang (e.g. -DCMAKE_C_COMPILER=clang-14), not ${CMAKE_C_COMPILER_ID}")
  endif()
  add_compile_options(-fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer
                      -fno-sanitize-recover=all)
  add_link_options(-fsanitize=address,undefined)
  add_custom_target(fuzz_all)
endif()

# tl_add_fuzzer(NAME SOURCE src LIBS lib... [SEEDS dir...]): a fuzz target whose seeds
# are tests/fuzz/corpus/<NAME without "fuzz_"> and the SEEDS folders.
function(tl_add_fuzzer name)
  cmake_parse_arguments(F "" "SOURCE" "LIBS;SEEDS" ${ARGN})
  add_executable(${name} ${F_SOURCE})
  target_link_libraries(${name} PRIVATE ${F_LIBS})
  if(TL_FUZZ)
    target_link_options(${name} PRIVATE -fsanitize=fuzzer)
    add_dependencies(fuzz_all ${name})
  else()
    string(REGEX REPLACE "^fuzz_" "" _corpus ${name})
    target_sources(${name} PRIVATE ${PROJECT_SOURCE_DIR}/tests/fuzz/replay.c)
    add_test(NAME ${name}_seeds
      COMMAND ${name} ${PROJECT_SOURCE_DIR}/tests/fuzz/corpus/${_corpus} ${F_SEEDS})
    # libfyaml's known leak (tests/lsan.supp) is named only in a full stack.
    set_tests_properties(${name}_seeds PROPERTIES LABELS unit TIMEOUT 120
      ENVIRONMENT "ASAN_OPTIONS=fast_unwind_on_malloc=0;LSAN_OPTIONS=suppressions=${PROJECT_SOURCE_DIR}/tests/lsan.supp")
  endif()
endfunction()
