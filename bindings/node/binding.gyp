{
  "variables": {
    # Where libtokenchecker lives; scripts/build.js passes what it found (TOKENCHECKER_LIB_DIR,
    # TOKENCHECKER_INCLUDE_DIR, the checkout, pkg-config) as --tokenchecker_lib_dir=... etc.
    "tokenchecker_lib_dir%": "<(module_root_dir)/../../target/release",
    "tokenchecker_include_dir%": "<(module_root_dir)/../../include",
    # "shared": link libtokenchecker.so (runpath to its directory); "static": link
    # libtokenchecker.a into the addon (the prebuilt addon of the npm package: one file, no
    # run-time dependency but glibc).
    "tokenchecker_link%": "shared"
  },
  "targets": [
    {
      "target_name": "tokenchecker",
      "sources": ["src/addon.c"],
      "include_dirs": ["<(tokenchecker_include_dir)"],
      "defines": ["NAPI_VERSION=8"],
      "cflags_c": ["-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "conditions": [
        ["tokenchecker_link=='static'", {
          # The system libraries the Rust runtime needs (rustc --print native-static-libs);
          # the library's own symbols stay local to the addon.
          "libraries": [
            "<(tokenchecker_lib_dir)/libtokenchecker.a",
            "-lgcc_s", "-lutil", "-lrt", "-lpthread", "-lm", "-ldl"
          ],
          "ldflags": ["-Wl,--exclude-libs,ALL", "-Wl,--gc-sections"]
        }, {
          "libraries": [
            "-L<(tokenchecker_lib_dir)",
            "-ltokenchecker",
            "-lpthread",
            "-ldl"
          ],
          "ldflags": [
            "-Wl,-rpath,<(tokenchecker_lib_dir)",
            "-Wl,-rpath,'$$ORIGIN/../../../../target/release'"
          ],
          "conditions": [
            ["OS=='mac'", {
              "xcode_settings": {
                "OTHER_LDFLAGS": ["-Wl,-rpath,<(tokenchecker_lib_dir)"]
              }
            }]
          ]
        }]
      ]
    }
  ]
}
