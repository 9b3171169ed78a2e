"""The machinery that makes runs fast and spread out, none of it needed to read the learning: devices and
meshes, multi-process jobs, XLA options, the compile cache and the store of whole compiled programs, a host-side
threefry."""
