{
  # Built by scripts/build-native.mjs (the package's install script) with
  # node-gyp; optional: the wasm kernels are used when this is not built.
  #
  # BLAS flags come from `pkg-config openblas` when available, else plain
  # -lopenblas with the compiler's default include path (Debian's
  # /usr/include/<triplet>/cblas.h).
  #
  # Code generation: -O3 and, on x64, -march=$MUSE_NATIVE_MARCH (default
  # x86-64-v2, which any x86-64 CPU of the last ~12 years runs), so a build
  # copied to another machine (e.g. a cached Docker layer) still loads. The
  # heavy lifting is OpenBLAS, which picks its kernels at run time anyway; set
  # MUSE_NATIVE_MARCH=native to tune this file's own loops for the build host.
  #
  # oneDNN (bf16 matrix units): linked when MUSE_NATIVE_DNNL=1, which
  # scripts/build-native.mjs sets when oneDNN's headers exist (Debian's
  # libdnnl-dev); it retries without it if that build fails. The addon picks
  # bf16 at run time only on CPUs with AVX-512 BF16 or AMX.
  "variables": {
    "muse_dnnl%": "<!(echo ${MUSE_NATIVE_DNNL:-0})"
  },
  "targets": [
    {
      "target_name": "muse_native",
      "sources": ["muse_native.cc"],
      "cflags!": ["-O0", "-O1", "-O2"],
      "cflags_cc!": ["-fno-exceptions", "-O0", "-O1", "-O2"],
      "cflags": ["-O3"],
      "cflags_cc": [
        "-O3",
        "-std=gnu++17",
        "-fexceptions",
        "-fvisibility=hidden",
        "-Wno-psabi",
        "<!@(pkg-config --cflags openblas 2>/dev/null || true)"
      ],
      "libraries": [
        "<!@(pkg-config --libs openblas 2>/dev/null || echo -lopenblas)"
      ],
      "conditions": [
        [
          "muse_dnnl==1",
          {
            "defines": ["MUSE_HAVE_DNNL=1"],
            "libraries": ["-ldnnl", "-lgomp"]
          }
        ],
        [
          "target_arch=='x64'",
          {
            "cflags_cc": ["-march=<!(echo ${MUSE_NATIVE_MARCH:-x86-64-v2})"]
          }
        ],
        [
          "OS=='mac'",
          {
            "xcode_settings": {
              "GCC_ENABLE_CPP_EXCEPTIONS": "YES",
              "GCC_OPTIMIZATION_LEVEL": "3",
              "OTHER_CPLUSPLUSFLAGS": [
                "<!@(pkg-config --cflags openblas 2>/dev/null || true)"
              ]
            }
          }
        ]
      ]
    }
  ]
}
