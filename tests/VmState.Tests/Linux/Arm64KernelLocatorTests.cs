using VmState.Linux;

namespace VmState.Tests.Linux;

public sealed class Arm64KernelLocatorTests
{
    private static byte[] TaskBtf()
    {
        var w = new BtfWriter();
        int i = w.Int("int", 4, signed: true);
        w.Struct("task_struct", 8, ("pid", i, 0, 0), ("tgid", i, 32, 0));
        return w.Build();
    }

    [Fact]
    public void The_btf_in_an_image_is_the_header_whose_sections_fit_and_parse()
    {
        byte[] btf = TaskBtf();
        byte[] image = new byte[0x3000];
        Random.Shared.NextBytes(image);

        // A decoy first: the magic, version and header length, but sections that run past the image.
        byte[] decoy = [0x9F, 0xEB, 0x01, 0x00, 0x18, 0x00, 0x00, 0x00, 0, 0, 0, 0, 0x10, 0, 0, 0, 0x10, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0x7F];
        decoy.CopyTo(image, 0x100);
        btf.CopyTo(image, 0x1234);
        Assert.Equal((0x1234, btf.Length), Arm64KernelLocator.FindBtf(image));
    }

    [Fact]
    public void An_image_without_btf_or_with_btf_lacking_task_struct_has_none()
    {
        Assert.Null(Arm64KernelLocator.FindBtf(new byte[4096]));
        var w = new BtfWriter();
        w.Int("int", 4, signed: true);
        byte[] image = new byte[4096];
        w.Build().CopyTo(image, 64);
        Assert.Null(Arm64KernelLocator.FindBtf(image));
    }

    [Fact]
    public void Symbols_added_to_kallsyms_are_found_in_address_order_and_keep_the_layout()
    {
        Kallsyms text = Kallsyms.FromList([("_stext", 'T', 0x1000UL), ("do_exit", 'T', 0x3000UL)], "kallsyms");
        Kallsyms all = text.WithSymbols([("init_task", 'D', 0x2000UL)], "init_task from SP_EL0");
        Assert.Equal(["_stext", "init_task", "do_exit"], all.Select(s => s.Name));
        Assert.Equal(0x2000UL, all.AddressOf("init_task"));
        Assert.Equal('D', all.Find("init_task")!.Value.Type);
        Assert.Equal("kallsyms; init_task from SP_EL0", all.Layout.Source);
        Assert.Equal(2, text.Count);
    }
}
