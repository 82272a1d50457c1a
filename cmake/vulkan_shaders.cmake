# Compiles every shaders/vulkan/*.comp to SPIR-V with glslc, twice: once plain
# (shared-memory reductions, any Vulkan 1.1 device) and once with
# -DUSE_SUBGROUP=1 (subgroup shuffles, where the device has them). Both are
# embedded into `target` as one generated C++ source (embed_spirv.cmake), which
# defines swarm::vk::find_spirv() (engine/vulkan_spirv.h).
function(swarm_vulkan_shaders target dir)
  file(GLOB comps CONFIGURE_DEPENDS ${dir}/*.comp)
  file(GLOB includes CONFIGURE_DEPENDS ${dir}/*.glsl)
  set(out_dir ${CMAKE_BINARY_DIR}/shaders/vulkan)
  file(MAKE_DIRECTORY ${out_dir})
  set(spvs)
  foreach(comp IN LISTS comps)
    get_filename_component(name ${comp} NAME_WE)
    foreach(variant plain subgroup)
      if(variant STREQUAL "subgroup")
        set(def -DUSE_SUBGROUP=1)
      else()
        set(def -DUSE_SUBGROUP=0)
      endif()
      set(spv ${out_dir}/${name}.${variant}.spv)
      # vulkan1.1: SPIR-V 1.3, the first with subgroup operations.
      add_custom_command(OUTPUT ${spv}
        COMMAND ${GLSLC} --target-env=vulkan1.1 -O -Werror ${def} -I ${dir} -o ${spv} ${comp}
        DEPENDS ${comp} ${includes}
        COMMENT "glslc ${name}.comp (${variant})" VERBATIM)
      list(APPEND spvs ${spv})
    endforeach()
  endforeach()
  set(cc ${CMAKE_BINARY_DIR}/generated/vulkan_spirv.cc)
  add_custom_command(OUTPUT ${cc}
    COMMAND ${CMAKE_COMMAND} -DOUT=${cc} "-DFILES=${spvs}" -P ${CMAKE_SOURCE_DIR}/cmake/embed_spirv.cmake
    DEPENDS ${spvs} ${CMAKE_SOURCE_DIR}/cmake/embed_spirv.cmake
    COMMENT "Embedding the Vulkan shaders' SPIR-V" VERBATIM)
  target_sources(${target} PRIVATE ${cc})
endfunction()
