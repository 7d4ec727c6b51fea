namespace VmState.Fuzz;

/// <summary>
/// <c>VmState.Fuzz TARGET</c>: run under AFL++ (SharpFuzz out-of-process mode).
/// <c>VmState.Fuzz TARGET --replay FILE...</c>: run the target on files directly (corpus replay, crash reproduction).
/// </summary>
public static class Program
{
    public static int Main(string[] args)
    {
        if (args.Length == 0 || !Targets.All.TryGetValue(args[0], out Action<byte[]>? target))
        {
            Console.Error.WriteLine($"usage: VmState.Fuzz ({string.Join('|', Targets.All.Keys)}) [--replay FILE...]");
            return 2;
        }

        if (args.Length > 1 && args[1] == "--replay")
        {
            int n = 0;
            foreach (string path in args.Skip(2))
            {
                foreach (string file in Directory.Exists(path) ? Directory.GetFiles(path) : [path])
                {
                    Targets.Run(target, File.ReadAllBytes(file));
                    n++;
                }
            }

            Console.WriteLine($"{args[0]}: replayed {n} inputs, no unexpected exception");
            return 0;
        }

        SharpFuzz.Fuzzer.OutOfProcess.Run(stream =>
        {
            using var ms = new MemoryStream();
            stream.CopyTo(ms);
            Targets.Run(target, ms.ToArray());
        });
        return 0;
    }
}
