{
  "targets": [
    {
      "target_name": "shmlease",
      "sources": ["src/addon.cc"],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "<!@(node scripts/gyp-flags.js include)"
      ],
      "libraries": ["<!@(node scripts/gyp-flags.js libs)"],
      "cflags_cc": ["-std=c++17", "-Wall", "-Wextra"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS"]
    }
  ]
}
