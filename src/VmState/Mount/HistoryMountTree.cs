using System.Globalization;
using VmState.History;

namespace VmState.Mount;

/// <summary>
/// The filesystem view of a history store: <c>history/N/</c> is the tree of capture N (<see cref="VmMountTree"/>),
/// opened on first use and kept until this object is disposed, and <c>history/latest</c> a symbolic link to the
/// newest capture's directory.
/// </summary>
public sealed class HistoryMountTree : IDisposable
{
    private readonly Func<HistoryCapture, Vm> _open;
    private readonly List<Vm> _opened = [];
    private readonly Lock _gate = new();
    private bool _disposed;

    /// <summary>The tree of <paramref name="store"/>'s captures, each opened with <paramref name="open"/> (e.g. <c>Vm.Open("STORE@N")</c>).</summary>
    public HistoryMountTree(HistoryStore store, Func<HistoryCapture, Vm> open)
    {
        ArgumentNullException.ThrowIfNull(store);
        _open = open ?? throw new ArgumentNullException(nameof(open));
        IReadOnlyList<HistoryCapture> captures = store.Captures;
        Root = new MountDirectory("root", new MountDirectory("history", () => Captures(captures)));
    }

    /// <summary>The root of the tree: <c>history/</c>.</summary>
    public MountDirectory Root { get; }

    private IEnumerable<MountNode> Captures(IReadOnlyList<HistoryCapture> captures)
    {
        foreach (HistoryCapture c in captures)
        {
            HistoryCapture capture = c;
            yield return new MountDirectory(Name(capture), () => VmMountTree.Build(Open(capture)).Children);
        }

        if (captures.Count > 0)
        {
            string latest = Name(captures[^1]);
            yield return new MountLink("latest", () => latest);
        }
    }

    private static string Name(HistoryCapture c) => c.Number.ToString(CultureInfo.InvariantCulture);

    private Vm Open(HistoryCapture capture)
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            Vm vm = _open(capture);
            _opened.Add(vm);
            return vm;
        }
    }

    /// <summary>Closes every capture opened.</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            _disposed = true;
            foreach (Vm vm in _opened)
            {
                vm.Dispose();
            }

            _opened.Clear();
        }
    }
}
