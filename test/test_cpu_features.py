from sam_ros.cpu_features import cpu_flags, cpu_model, native_bf16

X86 = "processor\t: 0\nmodel name\t: AMD EPYC 9654\nflags\t\t: fpu sse avx2 avx512f {extra}\n\nprocessor\t: 1\n"
ARM = "processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd sve {extra}\n"


def test_native_bf16_from_cpu_flags(tmp_path):
    cases = {"x86_bf16": (X86.format(extra="avx512_bf16"), True), "x86_amx": (X86.format(extra="amx_bf16 amx_tile"), True),
             "x86_plain": (X86.format(extra="avx512_vnni"), False), "arm_bf16": (ARM.format(extra="bf16 i8mm"), True),
             "arm_plain": (ARM.format(extra="i8mm"), False), "empty": ("", False)}
    for name, (text, native) in cases.items():
        path = tmp_path / name
        path.write_text(text)
        assert native_bf16(cpu_flags(path)) is native, name
    assert cpu_model(tmp_path / "x86_bf16") == "AMD EPYC 9654"
    assert cpu_flags(tmp_path / "missing") == frozenset()
