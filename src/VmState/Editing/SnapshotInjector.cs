using System.Buffers.Binary;
using System.Text.Json;
using VmState.Arch.Arm64;
using VmState.Arch.X86;
using VmState.Formats.Elf;
using VmState.Formats.Migration;
using VmState.Machine;
using VmState.Memory;
using VmState.Snapshots;

namespace VmState.Editing;

/// <summary>
/// Carries the changes made to an extracted pair — core.elf (memory, registers) and hardware.json (device fields,
/// registers) — back into a snapshot: every difference from the original becomes an edit, nothing else changes.
/// </summary>
public static class SnapshotInjector
{
    private const int Chunk = 4 << 20;

    /// <summary>What an injection found and applied.</summary>
    public sealed record Result(int PagesChanged, int RegistersChanged, int FieldsChanged, IReadOnlyList<string> Changes);

    /// <summary>Adds to <paramref name="editor"/> every difference between <paramref name="original"/> and the edited files.</summary>
    /// <exception cref="InvalidEditException">A difference that cannot be carried back (a size, a length, a field or register that cannot be set this way), or files that do not fit this snapshot.</exception>
    /// <exception cref="VmStateNotFoundException">The hardware file names a vCPU or device the snapshot does not have.</exception>
    public static Result Apply(SnapshotEditor editor, MachineState original, string? corePath, string? hardwarePath, CancellationToken cancellationToken = default)
    {
        var changes = new List<string>();
        int pages = 0;
        int registers = 0;
        int fields = 0;
        if (corePath is not null)
        {
            using MachineState core = SnapshotLoader.Open(corePath);
            if (core.Origin is not ElfCoreOrigin)
            {
                throw new InvalidEditException(corePath, $"{corePath} is a {core.Origin.Description}, not an ELF core");
            }

            pages = ApplyMemory(editor, original, core, changes, cancellationToken);
            registers += ApplyCoreRegisters(editor, original, core, changes);
        }

        if (hardwarePath is not null)
        {
            using FileStream fs = File.OpenRead(hardwarePath);
            using JsonDocument doc = JsonDocument.Parse(fs, new JsonDocumentOptions { MaxDepth = 256 });
            (int r, int f) = ApplyHardware(editor, original, doc.RootElement, hardwarePath, changes);
            registers += r;
            fields += f;
        }

        return new Result(pages, registers, fields, changes);
    }

    private static int ApplyMemory(SnapshotEditor editor, MachineState original, MachineState core, List<string> changes, CancellationToken ct)
    {
        byte[] a = new byte[Chunk];
        byte[] b = new byte[Chunk];
        int pages = 0;
        foreach (MemoryRange r in original.Memory.Ranges)
        {
            for (ulong done = 0; done < r.Length; done += Chunk)
            {
                ct.ThrowIfCancellationRequested();
                int n = (int)Math.Min(Chunk, r.Length - done);
                ulong at = r.Start + done;
                original.Memory.ReadExactly(at, a.AsSpan(0, n));
                int got = core.Memory.Read(at, b.AsSpan(0, n));
                if (got != n)
                {
                    throw new InvalidEditException(at + (ulong)got, "guest-physical", $"the core has no memory at guest-physical 0x{at + (ulong)got:x}, which the snapshot has; was it extracted from this snapshot?");
                }

                if (a.AsSpan(0, n).SequenceEqual(b.AsSpan(0, n)))
                {
                    continue;
                }

                for (int p = 0; p < n; p += 4096)
                {
                    int len = Math.Min(4096, n - p);
                    if (!a.AsSpan(p, len).SequenceEqual(b.AsSpan(p, len)))
                    {
                        editor.Stream.WritePhysical(at + (ulong)p, b.AsSpan(p, len));
                        pages++;
                    }
                }
            }
        }

        if (pages > 0)
        {
            changes.Add($"memory: {pages} pages differ from the snapshot");
        }

        return pages;
    }

    private static int ApplyCoreRegisters(SnapshotEditor editor, MachineState original, MachineState core, List<string> changes)
    {
        if (original.Architecture == Arch.CpuArchitecture.Arm64)
        {
            return ApplyArm64CoreRegisters(editor, original, core, changes);
        }

        // Both notes are compared with the original: a register that differs in one of them is an edit; a register
        // that differs in both must agree.
        var fromPrstatus = new Dictionary<int, X86CpuState>();
        var fromQemu = new Dictionary<int, X86CpuState>();
        int qemuIndex = 0;
        foreach (ElfNote n in ((ElfCoreOrigin)core.Origin).Notes)
        {
            if (n.Name == "CORE" && n.Type == ElfNote.NtPrstatus)
            {
                var c = new X86CpuState();
                X86CoreNotes.ReadPrstatus(n.Descriptor, c);
                fromPrstatus[c.Index] = c;
            }
            else if (n.Name == "QEMU" && n.Type == 0)
            {
                var c = new X86CpuState { Index = qemuIndex++ };
                X86CoreNotes.ReadQemuCpuState(n.Descriptor, c);
                fromQemu[c.Index] = c;
            }
        }

        int count = 0;
        foreach (X86CpuState o in original.Cpus)
        {
            var values = new Dictionary<string, ulong>(StringComparer.Ordinal);
            if (fromPrstatus.TryGetValue(o.Index, out X86CpuState? p))
            {
                Collect(values, o, p, prstatusOnly: true);
            }

            if (fromQemu.TryGetValue(o.Index, out X86CpuState? q))
            {
                Collect(values, o, q, prstatusOnly: false);
            }

            foreach ((string reg, ulong value) in values)
            {
                editor.SetRegister(o.Index, reg, value);
                changes.Add($"vCPU {o.Index}: {reg} = 0x{value:x} (from the core)");
                count++;
            }
        }

        return count;
    }

    // An AArch64 core carries user_pt_regs per vCPU in NT_PRSTATUS (pr_pid = index + 1, as QEMU and extract write it):
    // x0–x30, sp, pc, pstate; the system registers travel in hardware.json.
    private static int ApplyArm64CoreRegisters(SnapshotEditor editor, MachineState original, MachineState core, List<string> changes)
    {
        var edited = new Dictionary<int, Arm64CpuState>();
        foreach (ElfNote n in ((ElfCoreOrigin)core.Origin).Notes)
        {
            if (n.Name == "CORE" && n.Type == ElfNote.NtPrstatus && n.Descriptor.Length >= Arm64CoreNotes.PrstatusPidOffset + 4)
            {
                int index = BinaryPrimitives.ReadInt32LittleEndian(n.Descriptor.AsSpan(Arm64CoreNotes.PrstatusPidOffset)) - 1;
                var c = new Arm64CpuState { Index = index };
                Arm64CoreNotes.ReadPrstatus(n.Descriptor, c);
                edited[index] = c;
            }
        }

        int count = 0;
        foreach (Arm64CpuState o in original.Arm64Cpus)
        {
            if (!edited.TryGetValue(o.Index, out Arm64CpuState? e))
            {
                continue;
            }

            var values = new List<(string, ulong, ulong)>();
            for (int i = 0; i < 31; i++)
            {
                values.Add(($"x{i}", o.X[i], e.X[i]));
            }

            values.Add(("sp", o.Sp, e.Sp));
            values.Add(("pc", o.Pc, e.Pc));
            values.Add(("pstate", o.Pstate, e.Pstate));
            foreach ((string reg, ulong before, ulong after) in values)
            {
                if (before != after)
                {
                    editor.SetRegister(o.Index, reg, after);
                    changes.Add($"vCPU {o.Index}: {reg} = 0x{after:x} (from the core)");
                    count++;
                }
            }
        }

        return count;
    }

    // hardware.json's AArch64 vCPU: "registers" (x0–x30, sp, pc, pstate, banked SP/ELR/SPSR, fpsr, fpcr) and
    // "systemRegisters" (by the names NameOf gives them).
    private static int ApplyArm64Hardware(SnapshotEditor editor, MachineState original, JsonElement c, int index, string path, List<string> changes)
    {
        Arm64CpuState o = original.Arm64Cpus.FirstOrDefault(x => x.Index == index) ?? throw new VmStateNotFoundException(VmStateObjectKind.Cpu, index.ToString(System.Globalization.CultureInfo.InvariantCulture), $"{path}: vCPU {index} is not in the snapshot");
        int count = 0;
        foreach (string block in new[] { "registers", "systemRegisters" })
        {
            if (!c.TryGetProperty(block, out JsonElement registers))
            {
                continue;
            }

            foreach (JsonProperty r in registers.EnumerateObject())
            {
                ulong value = SnapshotEditor.ParseInteger(r.Value.GetString() ?? string.Empty, $"{path}: cpus[{index}].{block}.{r.Name}").Value;
                ulong before = o.GetRegister(r.Name)
                    ?? o.SystemRegisterIds.Where(id => Arm64SystemRegisters.NameOf(id) == r.Name).Select(id => o.SystemRegister(id)).FirstOrDefault()
                    ?? throw new InvalidEditException(r.Name, $"{path}: unknown register \"{r.Name}\" in cpus[{index}].{block}");
                if (before == value)
                {
                    continue;
                }

                editor.SetRegister(index, r.Name, value);
                changes.Add($"vCPU {index}: {r.Name} = 0x{value:x} (from {Path.GetFileName(path)})");
                count++;
            }
        }

        return count;
    }

    private static void Collect(Dictionary<string, ulong> values, X86CpuState original, X86CpuState edited, bool prstatusOnly)
    {
        void Check(string name, ulong before, ulong after)
        {
            if (before == after)
            {
                return;
            }

            if (values.TryGetValue(name, out ulong other) && other != after)
            {
                throw new InvalidEditException(name, $"the core's NT_PRSTATUS and QEMU notes give different new values for {name} of vCPU {original.Index} (0x{other:x} and 0x{after:x}); edit one of them");
            }

            values[name] = after;
        }

        for (int i = 0; i < 16; i++)
        {
            Check(X86CpuState.GeneralRegisterNames[i], original.Regs[i], edited.Regs[i]);
        }

        Check("rip", original.Rip, edited.Rip);
        Check("rflags", original.Rflags, edited.Rflags);
        foreach (int s in new[] { X86CpuState.Cs, X86CpuState.Ss, X86CpuState.Ds, X86CpuState.Es, X86CpuState.Fs, X86CpuState.Gs })
        {
            Check(X86CpuState.SegmentNames[s], original.Segments[s].Selector, edited.Segments[s].Selector);
        }

        Check("fs_base", original.Segments[X86CpuState.Fs].Base, edited.Segments[X86CpuState.Fs].Base);
        Check("gs_base", original.Segments[X86CpuState.Gs].Base, edited.Segments[X86CpuState.Gs].Base);
        if (!prstatusOnly)
        {
            foreach (int s in new[] { X86CpuState.Cs, X86CpuState.Ss, X86CpuState.Ds, X86CpuState.Es })
            {
                Check(X86CpuState.SegmentNames[s] + "_base", original.Segments[s].Base, edited.Segments[s].Base);
            }

            Check("cr0", original.Cr0, edited.Cr0);
            Check("cr2", original.Cr2, edited.Cr2);
            Check("cr3", original.Cr3, edited.Cr3);
            Check("cr4", original.Cr4, edited.Cr4);
            Check("kernel_gs_base", original.KernelGsBase, edited.KernelGsBase);
        }
    }

    // The registers of the hardware file's "registers" block that the editor does not set (X86Register.Editable).
    private static ulong ReadOnlyRegister(X86CpuState c, string name, string path) =>
        X86Registers.Find(name) is { InHardwareFile: true } r && r.Name == name
            ? r.Get(c)
            : throw new InvalidEditException(name, $"{path}: unknown register \"{name}\" in the cpus block");

    private static (int Registers, int Fields) ApplyHardware(SnapshotEditor editor, MachineState original, JsonElement root, string path, List<string> changes)
    {
        if (!root.TryGetProperty("format", out JsonElement format) || format.GetString() != Export.HardwareJsonWriter.FormatId)
        {
            throw new InvalidEditException(path, $"{path} is not a vmstate hardware file (expected \"format\": \"{Export.HardwareJsonWriter.FormatId}\")");
        }

        int registers = 0;
        if (root.TryGetProperty("cpus", out JsonElement cpus))
        {
            foreach (JsonElement c in cpus.EnumerateArray())
            {
                int index = c.GetProperty("index").GetInt32();
                if (original.Architecture == Arch.CpuArchitecture.Arm64)
                {
                    registers += ApplyArm64Hardware(editor, original, c, index, path, changes);
                    continue;
                }

                X86CpuState o = original.Cpus.FirstOrDefault(x => x.Index == index) ?? throw new VmStateNotFoundException(VmStateObjectKind.Cpu, index.ToString(System.Globalization.CultureInfo.InvariantCulture), $"{path}: vCPU {index} is not in the snapshot");
                foreach (JsonProperty r in c.GetProperty("registers").EnumerateObject())
                {
                    ulong value = SnapshotEditor.ParseInteger(r.Value.GetString() ?? string.Empty, $"{path}: cpus[{index}].registers.{r.Name}").Value;
                    ulong before = o.GetRegister(r.Name) ?? ReadOnlyRegister(o, r.Name, path);
                    if (before == value)
                    {
                        continue;
                    }

                    if (o.GetRegister(r.Name) is null)
                    {
                        throw new InvalidEditException(r.Name, $"{path}: cpus[{index}].registers.{r.Name} changed, but only general, segment and control registers, rip, rflags, efer and the syscall MSRs can be set from this block; edit the field in the \"cpu\" device section instead");
                    }

                    {
                        editor.SetRegister(index, r.Name, value);
                        changes.Add($"vCPU {index}: {r.Name} = 0x{value:x} (from {Path.GetFileName(path)})");
                        registers++;
                    }
                }
            }
        }

        int fields = 0;
        var seen = new Dictionary<(string, int), int>();
        foreach (JsonElement d in root.GetProperty("devices").EnumerateArray())
        {
            string id = d.GetProperty("id").GetString()!;
            int instance = d.GetProperty("instance").GetInt32();
            int occurrence = seen.TryGetValue((id, instance), out int k) ? k : 0;
            seen[(id, instance)] = occurrence + 1;
            DeviceState? device = original.Devices.Where(x => x.IdStr == id && x.InstanceId == instance).Skip(occurrence).FirstOrDefault();
            if (device?.State is null)
            {
                throw new VmStateNotFoundException(VmStateObjectKind.Device, id, $"{path}: device {id} (instance {instance}) is not in the snapshot");
            }

            if (d.TryGetProperty("fields", out JsonElement jf))
            {
                fields += CompareFields(editor, device.State, jf, $"{device.Key}", changes, path);
            }

            if (d.TryGetProperty("subsections", out JsonElement js))
            {
                fields += CompareSubsections(editor, device.State, js, device.Key, changes, path);
            }
        }

        return (registers, fields);
    }

    private static int CompareSubsections(SnapshotEditor editor, VmsdState state, JsonElement subsections, string where, List<string> changes, string path)
    {
        int n = 0;
        foreach (JsonElement s in subsections.EnumerateArray())
        {
            string name = s.GetProperty("name").GetString()!;
            VmsdState sub = state.Subsection(name) ?? throw new InvalidEditException(where, $"{path}: {where} has no subsection {name} in the snapshot (subsections cannot be added)");
            n += CompareFields(editor, sub, s.GetProperty("fields"), $"{where}/{name}", changes, path);
            if (s.TryGetProperty("subsections", out JsonElement inner))
            {
                n += CompareSubsections(editor, sub, inner, $"{where}/{name}", changes, path);
            }
        }

        return n;
    }

    private static int CompareFields(SnapshotEditor editor, VmsdState state, JsonElement fields, string where, List<string> changes, string path)
    {
        int n = 0;
        int i = 0;
        foreach (JsonElement jf in fields.EnumerateArray())
        {
            if (i >= state.Fields.Count)
            {
                throw new InvalidEditException(where, $"{path}: {where} has more fields than the snapshot (fields cannot be added)");
            }

            DeviceField f = state.Fields[i++];
            string name = jf.GetProperty("name").GetString()!;
            if (name != f.Name || jf.GetProperty("offset").GetInt64() != f.Offset)
            {
                throw new InvalidEditException(where, $"{path}: {where} field {i - 1} is \"{name}\" at offset {jf.GetProperty("offset").GetInt64()}, but the snapshot has \"{f.Name}\" at {f.Offset}; was the file extracted from this snapshot?");
            }

            n += CompareValue(editor, f, jf.GetProperty("value"), $"{where}.{f.Name}", changes, path);
        }

        return n;
    }

    private static int CompareValue(SnapshotEditor editor, DeviceField f, JsonElement value, string where, List<string> changes, string path)
    {
        switch (f.Kind)
        {
            case FieldKind.Bool:
                if (value.ValueKind is not (JsonValueKind.True or JsonValueKind.False))
                {
                    throw new InvalidEditException(where, $"{path}: {where} is a bool; found {value.ValueKind}");
                }

                ulong b = value.ValueKind == JsonValueKind.True ? 1UL : 0UL;
                if (b != f.Integer)
                {
                    editor.Stream.SetField(f, b);
                    changes.Add($"{where} = {(b == 1 ? "true" : "false")}");
                    return 1;
                }

                return 0;
            case FieldKind.Integer:
                if (value.ValueKind != JsonValueKind.Number)
                {
                    throw new InvalidEditException(where, $"{path}: {where} ({f.Type}) needs a number; found {value.ValueKind}");
                }

                if (f.Signed)
                {
                    if (!value.TryGetInt64(out long sv))
                    {
                        throw new InvalidEditException(where, $"{path}: {where} ({f.Type}): {value} is not a whole number");
                    }

                    if (sv != f.SignedInteger)
                    {
                        editor.Stream.SetField(f, (ulong)sv, sv < 0);
                        changes.Add($"{where} = {sv}");
                        return 1;
                    }

                    return 0;
                }

                if (!value.TryGetUInt64(out ulong uv))
                {
                    throw new InvalidEditException(where, $"{path}: {where} ({f.Type}): {value} is not a non-negative whole number");
                }

                if (uv != f.Integer)
                {
                    editor.Stream.SetField(f, uv);
                    changes.Add($"{where} = {uv}");
                    return 1;
                }

                return 0;
            case FieldKind.Bytes:
                if (value.ValueKind == JsonValueKind.Null && f.Bytes is null)
                {
                    return 0;
                }

                byte[] bytes = SnapshotEditor.ParseHex(value.GetString() ?? string.Empty, $"{path}: {where}");
                if (bytes.Length != f.Size)
                {
                    throw new InvalidEditException(where, $"{path}: {where} has {f.Size} bytes; the file gives {bytes.Length} (sizes cannot change)");
                }

                if (f.Bytes is not null && !bytes.AsSpan().SequenceEqual(f.Bytes))
                {
                    editor.Stream.SetFieldBytes(f, 0, bytes);
                    changes.Add($"{where}: bytes changed");
                    return 1;
                }

                return 0;
            case FieldKind.Struct:
                int n = CompareFields(editor, f.Struct!, value.GetProperty("fields"), where, changes, path);
                if (value.TryGetProperty("subsections", out JsonElement subs))
                {
                    n += CompareSubsections(editor, f.Struct!, subs, where, changes, path);
                }

                return n;
            case FieldKind.Array:
                if (value.ValueKind != JsonValueKind.Array || value.GetArrayLength() != f.Elements!.Count)
                {
                    throw new InvalidEditException(where, $"{path}: {where} is an array of {f.Elements!.Count}; the file gives {(value.ValueKind == JsonValueKind.Array ? value.GetArrayLength() : 0)} (lengths cannot change)");
                }

                int changed = 0;
                int i = 0;
                foreach (JsonElement e in value.EnumerateArray())
                {
                    changed += CompareValue(editor, f.Elements[i], e, $"{where}[{i}]", changes, path);
                    i++;
                }

                return changed;
            default:
                return 0;
        }
    }
}
