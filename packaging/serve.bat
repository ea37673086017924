@echo off
rem Start a PropDreamer server for Blender on Windows: create or update .venv, then run
rem `propdreamer serve` with your options. The add-on's default address is tcp://127.0.0.1:5757.
rem   packaging\serve.bat                     Stable Diffusion on the GPU when its weights are cached, else the builtin prior
rem   packaging\serve.bat --prior builtin     offline, any CPU
rem PyPI's torch for Windows is CPU-only, so torch comes from PyTorch's CUDA index; set
rem PROPDREAMER_TORCH_INDEX=https://download.pytorch.org/whl/cpu on a machine without an NVIDIA GPU.
rem 3D Gaussians on the GPU need gsplat to compile its CUDA kernels on first use (Visual Studio Build
rem Tools and the CUDA toolkit); the NeRF path needs neither.
setlocal
cd /d "%~dp0.."
if "%PROPDREAMER_TORCH_INDEX%"=="" set PROPDREAMER_TORCH_INDEX=https://download.pytorch.org/whl/cu128
if not exist ".venv\Scripts\python.exe" (
    py -3.11 -m venv .venv
    if errorlevel 1 (
        echo PropDreamer needs Python 3.11 ^(Blender 5.0's Python^): install it from python.org with the "py" launcher and run this again.
        exit /b 1
    )
)
".venv\Scripts\python.exe" -m pip install --quiet --disable-pip-version-check torch==2.13.0 --index-url %PROPDREAMER_TORCH_INDEX% --extra-index-url https://pypi.org/simple
if errorlevel 1 exit /b 1
".venv\Scripts\python.exe" -m pip install --quiet --disable-pip-version-check -c packaging\constraints.txt -e .
if errorlevel 1 exit /b 1
".venv\Scripts\propdreamer.exe" serve %*
