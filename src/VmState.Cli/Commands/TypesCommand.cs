using System.CommandLine;
using System.Text.Json;
using VmState.Linux;
using VmState.Linux.Btf;

namespace VmState.Cli.Commands;

/// <summary><c>vmstate types SNAPSHOT NAME</c>: a kernel type's layout from the guest's own BTF, like pahole.</summary>
internal static class TypesCommand
{
    public static Command Create()
    {
        Option<bool> json = CommonOptions.Json();
        var module = new Option<string?>("--module", "-m") { Description = "look the type up in this loaded module's BTF (split BTF on top of vmlinux's), e.g. e1000" };
        var command = new Command("types", "Show the layout of a Linux kernel type from the BTF in guest memory (pahole-like)");
        // NAME trails the snapshot, which --qmp leaves out (`types --qmp SOCKET task_struct`).
        var input = new KernelInput(command, "NAME", "NAME: a type: task_struct, \"struct list_head\", \"union thread_union\", \"enum pid_type\", a typedef such as kuid_t");
        command.Options.Add(json);
        command.Options.Add(module);
        command.SetAction(r => KernelInput.Run(() =>
        {
            using Vm vm = input.Open(r);
            string name = input.Trailing(r);
            KernelTypeMatch found = vm.Linux.FindType(name, r.GetValue(module));
            if (found.FromFallback)
            {
                Console.Error.WriteLine($"vmstate: '{name}' is from module {found.Module}'s BTF");
            }

            BtfTypes types = found.Types;
            int id = found.Id;
            if (r.GetValue(json))
            {
                CommonOptions.WriteJson(w =>
                {
                    WriteType(w, types, id, 0);
                });
            }
            else
            {
                Console.Write(TypeLayoutWriter.Format(types, id));
            }

            return 0;
        }));
        return command;
    }

    private static void WriteType(Utf8JsonWriter w, BtfTypes types, int id, ulong baseBits)
    {
        BtfType t = types.Get(id);
        BtfType r = types.Resolve(id);
        w.WriteStartObject();
        w.WriteString("name", types.TypeName(id));
        w.WriteString("kind", t.Kind.ToString());
        w.WriteNumber("id", id);
        if (r.Kind is not (BtfKind.Void or BtfKind.Function or BtfKind.FunctionProto or BtfKind.Forward))
        {
            w.WriteNumber("size", types.SizeOf(id));
        }

        if (r.IsComposite)
        {
            w.WriteStartArray("members");
            foreach (BtfMember m in r.Members)
            {
                ulong bits = baseBits + m.BitOffset;
                w.WriteStartObject();
                w.WriteString("name", m.Name);
                w.WriteString("type", types.TypeName(m.TypeId));
                w.WriteNumber("offset", bits / 8);
                if (m.IsBitfield)
                {
                    w.WriteNumber("bitOffset", bits % 8);
                    w.WriteNumber("bitSize", m.BitfieldSize);
                }

                BtfType mr = types.Resolve(m.TypeId);
                if (mr.Kind is not (BtfKind.Function or BtfKind.FunctionProto or BtfKind.Forward or BtfKind.Void))
                {
                    w.WriteNumber("size", types.SizeOf(m.TypeId));
                }

                if (m.IsAnonymous && mr.IsComposite)
                {
                    w.WritePropertyName("anonymous");
                    WriteType(w, types, m.TypeId, bits);
                }

                w.WriteEndObject();
            }

            w.WriteEndArray();
        }
        else if (r.Kind is BtfKind.Enum or BtfKind.Enum64)
        {
            w.WriteStartObject("values");
            foreach (BtfEnumValue v in r.EnumValues)
            {
                w.WriteNumber(v.Name, v.Value);
            }

            w.WriteEndObject();
        }

        w.WriteEndObject();
    }
}
