using System.Diagnostics;
using System.Text.Json;

namespace VmState.Live;

/// <summary>The few <c>qemu-img</c> operations runs of QEMU need: an image's format, a new qcow2, an overlay on an image, an internal snapshot.</summary>
public static class QemuImageTool
{
    /// <summary>The format qemu-img finds for <paramref name="path"/> (<c>qemu-img info --output=json</c>, "format").</summary>
    /// <exception cref="IOException">qemu-img failed (its message is included).</exception>
    public static async Task<string> FormatOfAsync(string path, CancellationToken cancellationToken = default)
    {
        string json = await RunAsync(["info", "--output=json", "-U", path], cancellationToken).ConfigureAwait(false);
        using var doc = JsonDocument.Parse(json);
        return doc.RootElement.TryGetProperty("format", out JsonElement f) && f.GetString() is string s && s.Length > 0
            ? s
            : throw new IOException($"qemu-img info {path} named no format");
    }

    /// <summary>What <c>qemu-img info --output=json -U</c> says about <paramref name="path"/> (its internal snapshots among it).</summary>
    /// <exception cref="IOException">qemu-img failed (its message is included).</exception>
    public static Task<string> InfoJsonAsync(string path, CancellationToken cancellationToken = default) =>
        RunAsync(["info", "--output=json", "-U", path], cancellationToken);

    /// <summary>Deletes the internal snapshot named <paramref name="tag"/> of the image at <paramref name="path"/> (<c>qemu-img snapshot -d</c>).</summary>
    public static Task DeleteSnapshotAsync(string path, string tag, CancellationToken cancellationToken = default) =>
        RunAsync(["snapshot", "-d", tag, path], cancellationToken);

    /// <summary>Creates an empty qcow2 image of <paramref name="size"/> bytes at <paramref name="path"/>.</summary>
    public static Task CreateAsync(string path, long size, CancellationToken cancellationToken = default) =>
        RunAsync(["create", "-q", "-f", "qcow2", path, size.ToString(System.Globalization.CultureInfo.InvariantCulture)], cancellationToken);

    /// <summary>Creates a qcow2 overlay at <paramref name="path"/> whose backing file is <paramref name="backing"/> (absolute) in <paramref name="backingFormat"/>.</summary>
    public static Task CreateOverlayAsync(string path, string backing, string backingFormat, CancellationToken cancellationToken = default) =>
        RunAsync(["create", "-q", "-f", "qcow2", "-F", backingFormat, "-b", Path.GetFullPath(backing), path], cancellationToken);

    /// <summary>Takes an internal snapshot named <paramref name="tag"/> of the image at <paramref name="path"/> (<c>qemu-img snapshot -c</c>).</summary>
    public static Task CreateSnapshotAsync(string path, string tag, CancellationToken cancellationToken = default) =>
        RunAsync(["snapshot", "-c", tag, path], cancellationToken);

    private static async Task<string> RunAsync(IReadOnlyList<string> args, CancellationToken cancellationToken)
    {
        var psi = new ProcessStartInfo("qemu-img") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string a in args)
        {
            psi.ArgumentList.Add(a);
        }

        Process p;
        try
        {
            p = Process.Start(psi) ?? throw new IOException("qemu-img did not start");
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            throw new IOException($"cannot run qemu-img (Debian: package qemu-utils): {e.Message}", e);
        }

        using (p)
        {
            Task<string> stderr = p.StandardError.ReadToEndAsync(cancellationToken);
            string stdout = await p.StandardOutput.ReadToEndAsync(cancellationToken).ConfigureAwait(false);
            await p.WaitForExitAsync(cancellationToken).ConfigureAwait(false);
            return p.ExitCode == 0
                ? stdout
                : throw new IOException($"qemu-img {string.Join(' ', args)} failed: {(await stderr.ConfigureAwait(false)).Trim()}");
        }
    }
}
