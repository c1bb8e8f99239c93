{
  "variables": {
    # Where libtokenchecker.so lives; override with
    #   TOKENCHECKER_LIB_DIR=/path npm run build
    # (scripts/build.js passes it as --tokenchecker_lib_dir=...).
    "tokenchecker_lib_dir%": "<(module_root_dir)/../../target/release",
    "tokenchecker_include_dir%": "<(module_root_dir)/../../include"
  },
  "targets": [
    {
      "target_name": "tokenchecker",
      "sources": ["src/addon.c"],
      "include_dirs": ["<(tokenchecker_include_dir)"],
      "defines": ["NAPI_VERSION=8"],
      "cflags_c": ["-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter"],
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
    }
  ]
}
