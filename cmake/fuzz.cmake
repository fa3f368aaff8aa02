# TL_FUZZ=ON: libFuzzer targets (tests/fuzz/README.md). Every library is built with
# coverage for the fuzzer and with ASan and UBSan, so a finding stops the run; only
# clang has libFuzzer, so this build dir is a clang one of its own.
if(NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
  message(FATAL_ERROR "TL_FUZZ needs clang (e.g. -DCMAKE_C_COMPILER=clang-14), not ${CMAKE_C_COMPILER_ID}")
endif()
add_compile_options(-fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer
                    -fno-sanitize-recover=all)
add_link_options(-fsanitize=address,undefined)
add_custom_target(fuzz_all)

# tl_add_fuzzer(NAME SOURCE LIBS...): a libFuzzer program, part of the fuzz_all target.
function(tl_add_fuzzer name source)
  add_executable(${name} ${source})
  target_link_options(${name} PRIVATE -fsanitize=fuzzer)
  target_link_libraries(${name} PRIVATE ${ARGN})
  add_dependencies(fuzz_all ${name})
endfunction()
